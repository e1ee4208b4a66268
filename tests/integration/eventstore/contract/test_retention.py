"""Retention per category: expired events (max_count per stream, max_age) are left out of every
read at once; other categories keep every event; versions go on from where the stream was."""

import time
from uuid import uuid4

import pytest

from eventstore.memory import InMemoryEventStore
from eventstore.retention import Rule
from eventstore.store import EventStore
from tests.support import Added, Opened

POLICY = (Rule("expiring", max_count=2), Rule("fleeting", max_age=1))


@pytest.fixture
def expiring(store):
    """The contract's store (PostgreSQL or memory) with POLICY."""
    if isinstance(store, EventStore):
        return EventStore(retention=POLICY)
    return InMemoryEventStore(retention=POLICY)


def in_log(store, sid):
    return [e.version for e in store.read_all(limit=100_000).events if e.stream_id == sid]


def test_max_count_keeps_the_last_events_of_each_stream(expiring):
    one, two = uuid4(), uuid4()
    expiring.append(one, "expiring", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
    expiring.append(two, "expiring", [Opened(name="b")])
    assert [e.version for e in expiring.read_stream(one)] == [4, 5]
    assert in_log(expiring, one) == [4, 5]
    assert [e.version for e in expiring.read_stream(two)] == [1]
    assert expiring.stream_version(one) == 5
    expiring.append(one, "expiring", [Added(amount=9)], expected_version=5)
    assert [e.version for e in expiring.read_stream(one)] == [5, 6]
    assert in_log(expiring, one) == [5, 6]


def test_max_count_with_a_version_range(expiring):
    sid = uuid4()
    expiring.append(sid, "expiring", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
    assert [e.version for e in expiring.read_stream(sid, from_version=1, to_version=4)] == [4]
    assert [e.version for e in expiring.read_stream(sid, backwards=True)] == [5, 4]


def test_max_age_leaves_out_what_is_older(expiring):
    sid = uuid4()
    expiring.append(sid, "fleeting", [Opened(name="a"), Added(amount=1)])
    assert [e.version for e in expiring.read_stream(sid)] == [1, 2]
    time.sleep(1.2)
    expiring.append(sid, "fleeting", [Added(amount=2)])
    assert [e.version for e in expiring.read_stream(sid)] == [3]
    assert in_log(expiring, sid) == [3]
    assert expiring.stream_version(sid) == 3


def test_other_categories_keep_every_event(expiring):
    sid = uuid4()
    expiring.append(sid, "tally", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
    assert [e.version for e in expiring.read_stream(sid)] == [1, 2, 3, 4, 5]
    assert in_log(expiring, sid) == [1, 2, 3, 4, 5]


def test_a_store_without_a_policy_sees_everything(store):
    sid = uuid4()
    store.append(sid, "expiring", [Opened(name="a"), *(Added(amount=i) for i in range(1, 5))])
    assert store.retention == ()
    assert [e.version for e in store.read_stream(sid)] == [1, 2, 3, 4, 5]
