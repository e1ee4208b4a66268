"""Personal data is stored encrypted in PostgreSQL's log and its key table. Reading it back and
forgetting it are rules both stores share: contract/test_personal_data.py."""

from uuid import uuid4

import pytest
from django.db import connection

from app.ledger.domain.events import AccountOpened, FundsDeposited
from eventstore import personal_data
from eventstore.personal_data import SubjectKeys

NAME = "Zoë Plaintext-Sentinel"


def _raw_log_mentions(text: str) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM eventstore_event WHERE data::text LIKE %s OR metadata::text LIKE %s",
            [f"%{text}%", f"%{text}%"],
        )
        return cur.fetchone()[0]


def test_the_owner_is_stored_encrypted(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR"), FundsDeposited(amount=5)])
    assert _raw_log_mentions("Plaintext-Sentinel") == 0
    assert _raw_log_mentions("enc:v1:") >= 1
    assert store.read_stream(sid)[0].data["owner"] == NAME


def test_a_ciphertext_is_bound_to_its_event(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR")])
    [event] = store.read_stream(sid)
    with connection.cursor() as cur:
        cur.execute("SELECT data->>'owner' FROM eventstore_event WHERE event_id = %s", [event.event_id])
        sealed = cur.fetchone()[0]
    key = SubjectKeys().get([sid])[sid]
    assert personal_data.decrypt(key, event.event_id, "owner", sealed) == NAME
    with pytest.raises(Exception):  # noqa: B017  (cryptography's InvalidTag)
        personal_data.decrypt(key, uuid4(), "owner", sealed)


def test_a_forgotten_subject_keeps_its_row_without_a_key(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR")])
    assert store.subject_keys.forget(sid)
    with connection.cursor() as cur:
        cur.execute("SELECT wrapped_key, forgotten_at FROM eventstore_subject_key WHERE subject_id = %s", [sid])
        wrapped, forgotten_at = cur.fetchone()
    assert wrapped is None and forgotten_at is not None
