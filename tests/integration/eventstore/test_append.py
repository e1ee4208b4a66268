"""Append semantics only PostgreSQL has: Django transactions around appends, prepared statements.
The rules both stores share are in contract/."""

from uuid import uuid4

import pytest
from django.db import transaction

from eventstore.errors import ConcurrencyError
from eventstore.records import NO_STREAM
from tests.support import Added, Opened


def test_a_conflict_inside_a_transaction_leaves_it_usable(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    with transaction.atomic():
        with pytest.raises(ConcurrencyError):
            store.append(sid, "tally", [Added(amount=1)], expected_version=NO_STREAM)
        store.append(sid, "tally", [Added(amount=2)], expected_version=1)
    assert [e.data for e in store.read_stream(sid)] == [{"name": "a"}, {"amount": 2}]


def test_an_append_rolled_back_with_its_transaction_leaves_no_trace(store):
    sid = uuid4()
    with pytest.raises(RuntimeError), transaction.atomic():
        store.append(sid, "tally", [Opened(name="a")])
        raise RuntimeError("the command failed after appending")
    assert store.read_stream(sid) == []


def test_appends_survive_prepared_statements_being_deallocated(store):
    from django.db import connection

    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    connection.connection.execute("DEALLOCATE ALL")  # as a pooler or a DISCARD ALL would
    assert store.append(sid, "tally", [Added(amount=1)], expected_version=1).version == 2
