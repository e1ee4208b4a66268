"""Archiving: a tombstoned stream's events leave the hot table; the stream reads as before, live
readers of the log no longer meet them, rebuild and export readers (`include_archived`) do, in
the same read order."""

from uuid import uuid4

import pytest

from eventstore import roles
from eventstore.store import EventStore
from tests.support import Added, Opened


@pytest.fixture
def archiver(store):
    """What archives: the owner's store for PostgreSQL, the same store in memory."""
    return EventStore(using=roles.migrating_alias()) if isinstance(store, EventStore) else store


def log_of(store, streams, **options):
    return [(e.stream_id, e.version) for e in store.read_all(limit=100_000, **options).events if e.stream_id in streams]


def test_an_archived_stream_reads_as_before(store, archiver):
    sid = uuid4()
    appended = store.append(sid, "tally", [Opened(name="a"), Added(amount=1), Added(amount=2)])
    before = store.read_stream(sid)
    store.tombstone(sid)
    assert archiver.archive([sid]) == 3
    assert store.read_stream(sid) == before
    assert [e.version for e in store.read_stream(sid, backwards=True, limit=2)] == [3, 2]
    assert [e.version for e in store.read_stream(sid, from_version=2, to_version=2)] == [2]
    assert store.stream_version(sid) == 3
    assert [e.event_id for e in before] == appended.event_ids


def test_only_reads_that_ask_see_archived_events_in_the_log_in_read_order(store, archiver):
    old, live = uuid4(), uuid4()
    store.append(old, "tally", [Opened(name="a"), Added(amount=1)])
    store.append(live, "tally", [Opened(name="b")])
    store.append(old, "tally", [Added(amount=2)])
    everything = log_of(store, {old, live})
    assert everything == [(old, 1), (old, 2), (live, 1), (old, 3)]
    store.tombstone(old)
    archiver.archive([old])
    assert log_of(store, {old, live}) == [(live, 1)]
    assert log_of(store, {old, live}, include_archived=True) == everything
    paged, after = [], None
    while True:  # page by page, each page merging both tables
        page = store.read_all(after or store.read_all(limit=0).checkpoint, limit=1, include_archived=True)
        if not page.events:
            break
        paged += [(e.stream_id, e.version) for e in page.events if e.stream_id in {old, live}]
        after = page.checkpoint
    assert paged == everything


def test_a_live_stream_is_not_archived(store, archiver):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    assert archiver.archive([sid]) == 0
    assert log_of(store, {sid}) == [(sid, 1)]


def test_archiving_twice_moves_nothing_more(store, archiver):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    store.tombstone(sid)
    assert archiver.archive([sid]) == 1
    assert archiver.archive([sid]) == 0
    assert [e.version for e in store.read_stream(sid)] == [1]
