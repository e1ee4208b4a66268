"""Personal data is encrypted from the first event on, readable while the subject's key exists."""

from uuid import uuid4

import pytest
from django.db import connection

from app.ledger.domain.account import Account
from app.ledger.domain.events import AccountOpened, FundsDeposited
from eventstore.errors import SubjectForgotten
from eventstore.personal_data import FORGOTTEN, SubjectKeys
from eventstore.repository import Repository

NAME = "Zoë Plaintext-Sentinel"


def _raw_log_mentions(text: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM eventstore_event WHERE data::text LIKE %s OR metadata::text LIKE %s",
            [f"%{text}%", f"%{text}%"],
        )
        return cur.fetchone()[0]


def test_the_owner_is_stored_encrypted_and_read_in_plain(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR"), FundsDeposited(amount=5)])
    assert _raw_log_mentions("Plaintext-Sentinel") == 0
    assert _raw_log_mentions("enc:v1:") >= 1
    events = store.read_stream(sid)
    assert events[0].data["owner"] == NAME
    assert [
        e.data["owner"]
        for e in store.read_all(categories=["account"]).events
        if e.stream_id == sid and "owner" in e.data
    ] == [NAME]
    assert Repository(Account, store).load(sid).state.owner == NAME


def test_a_ciphertext_is_bound_to_its_event(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR")])
    [event] = store.read_stream(sid)
    with connection.cursor() as cur:
        cur.execute("SELECT data->>'owner' FROM eventstore_event WHERE event_id = %s", [event.event_id])
        sealed = cur.fetchone()[0]
    from eventstore import personal_data

    key = SubjectKeys().get([sid])[sid]
    assert personal_data.decrypt(key, event.event_id, "owner", sealed) == NAME
    with pytest.raises(Exception):  # noqa: B017  (cryptography's InvalidTag)
        personal_data.decrypt(key, uuid4(), "owner", sealed)


def test_forgetting_a_subject_destroys_its_key_not_its_history(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR"), FundsDeposited(amount=5)])
    assert SubjectKeys().forget(sid)
    events = store.read_stream(sid)
    assert [e.type for e in events] == ["ledger.AccountOpened", "ledger.FundsDeposited"]
    assert events[0].data["owner"] == FORGOTTEN
    assert Repository(Account, store).load(sid).state.balance == 5
    with pytest.raises(SubjectForgotten):
        store.append(sid, "account", [AccountOpened(owner="again", currency="EUR")])
