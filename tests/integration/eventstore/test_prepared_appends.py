"""The append's prepared statements live on Django's connection beside psycopg's own, and
psycopg deallocates every prepared statement of the connection (DEALLOCATE ALL) after a ROLLBACK,
a ROLLBACK TO SAVEPOINT, a DROP or an ALTER once it has prepared one of its own. An append that
finds its statement gone must prepare it again without dooming the transaction it runs in."""

from uuid import uuid4

import pytest
from django.db import connection, transaction

from eventstore.errors import ConcurrencyError
from eventstore.records import NO_STREAM
from tests.support import Added, Opened


class Rolledback(Exception):
    pass


def test_an_append_in_a_transaction_after_a_rollback_elsewhere(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    store.append(sid, "tally", [Added(amount=1)], expected_version=1)  # the statement is prepared
    with pytest.raises(Rolledback), transaction.atomic():
        store.stream_version(sid)  # psycopg prepares a statement of its own
        raise Rolledback()  # a refused command: its ROLLBACK deallocates everything
    with transaction.atomic():
        assert store.append(sid, "tally", [Added(amount=2)], expected_version=2).version == 3
    assert [e.version for e in store.read_stream(sid)] == [1, 2, 3]


def test_an_append_after_a_refused_one_in_the_same_transaction(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    store.read_stream(sid)  # psycopg prepares a statement of its own
    with transaction.atomic():
        store.append(uuid4(), "tally", [Opened(name="b")], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError):  # its ROLLBACK TO SAVEPOINT deallocates everything
            store.append(sid, "tally", [Opened(name="c")], expected_version=NO_STREAM)
        assert store.append(uuid4(), "tally", [Opened(name="d")], expected_version=NO_STREAM).version == 1
    assert [e.data for e in store.read_stream(sid)] == [{"name": "a"}]


def test_an_append_in_a_transaction_after_deallocate_all(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    store.append(sid, "tally", [Added(amount=1)], expected_version=1)
    with transaction.atomic():
        connection.connection.execute("DEALLOCATE ALL")  # as a pooler or a DISCARD ALL would
        assert store.append(sid, "tally", [Added(amount=2)], expected_version=2).version == 3
