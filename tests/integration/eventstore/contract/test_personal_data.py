"""Personal data: read back in plain while the subject's key exists, FORGOTTEN after."""

from uuid import uuid4

import pytest

from app.ledger.domain.account import Account
from app.ledger.domain.events import AccountOpened, FundsDeposited
from eventstore.errors import SubjectForgotten
from eventstore.personal_data import FORGOTTEN
from eventstore.repository import Repository

NAME = "Zoë Plaintext-Sentinel"


def test_personal_data_is_read_back_in_plain(store):
    sid, start = uuid4(), store.head()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR"), FundsDeposited(amount=5)])
    events = store.read_stream(sid)
    assert events[0].data["owner"] == NAME
    assert [e.data["owner"] for e in store.read_all(start, categories=["account"]).events if "owner" in e.data] == [
        NAME
    ]
    assert Repository(Account, store).load(sid).state.owner == NAME
    store.append(sid, "account", [FundsDeposited(amount=1)])  # the subject's key is found, not made again
    assert store.read_stream(sid)[0].data["owner"] == NAME


def test_forgetting_a_subject_destroys_its_key_not_its_history(store):
    sid = uuid4()
    store.append(sid, "account", [AccountOpened(owner=NAME, currency="EUR"), FundsDeposited(amount=5)])
    assert store.subject_keys.forget(sid)
    assert not store.subject_keys.forget(sid)
    events = store.read_stream(sid)
    assert [e.type for e in events] == ["ledger.AccountOpened", "ledger.FundsDeposited"]
    assert events[0].data["owner"] == FORGOTTEN
    assert Repository(Account, store).load(sid).state.balance == 5
    with pytest.raises(SubjectForgotten):
        store.append(sid, "account", [AccountOpened(owner="again", currency="EUR")])
    store.append(sid, "account", [FundsDeposited(amount=1)])  # events without personal data still go in
    assert store.stream_version(sid) == 3
