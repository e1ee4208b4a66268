"""Tombstones: a tombstoned stream refuses every append, keeps its events, and says so."""

from uuid import uuid4

import pytest

from eventstore.errors import StreamTombstoned
from eventstore.records import ANY, NO_STREAM, NewEvent
from tests.support import Added, Opened


def test_a_live_stream_has_no_tombstone(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    assert store.tombstone_of(sid) is None


@pytest.mark.parametrize("expected", [ANY, 2, NO_STREAM])
def test_a_tombstoned_stream_refuses_appends_and_writes_nothing(store, expected):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a"), Added(amount=1)])
    store.tombstone(sid, reason="closed")
    with pytest.raises(StreamTombstoned) as err:
        store.append(sid, "tally", [Added(amount=2)], expected_version=expected)
    assert err.value.stream_id == sid
    assert store.stream_version(sid) == 2


def test_a_batch_over_the_values_limit_is_refused_too(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    store.tombstone(sid)
    with pytest.raises(StreamTombstoned):
        store.append(sid, "tally", [Added(amount=i) for i in range(1, 101)])
    assert store.stream_version(sid) == 1


def test_a_stream_never_written_can_be_tombstoned(store):
    sid = uuid4()
    store.tombstone(sid)
    with pytest.raises(StreamTombstoned):
        store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    assert store.read_stream(sid) == []


def test_a_retried_append_of_the_same_events_is_refused_after_the_tombstone(store):
    sid, event_id = uuid4(), uuid4()
    store.append(sid, "tally", [NewEvent(Opened(name="a"), event_id=event_id)], expected_version=NO_STREAM)
    store.tombstone(sid)
    with pytest.raises(StreamTombstoned):
        store.append(sid, "tally", [NewEvent(Opened(name="a"), event_id=event_id)], expected_version=NO_STREAM)


def test_the_events_stay_readable_and_in_the_log(store):
    sid = uuid4()
    appended = store.append(sid, "tally", [Opened(name="a"), Added(amount=1)])
    store.tombstone(sid)
    assert [e.version for e in store.read_stream(sid)] == [1, 2]
    found = store.read_all(limit=100_000).events
    assert [e.event_id for e in found if e.stream_id == sid] == appended.event_ids


def test_tombstoning_twice_keeps_the_first_tombstone(store):
    sid = uuid4()
    first = store.tombstone(sid, reason="closed")
    again = store.tombstone(sid, reason="another reason")
    assert again == first == store.tombstone_of(sid)
    assert (first.stream_id, first.reason) == (sid, "closed")


def test_other_streams_are_untouched(store):
    dead, live = uuid4(), uuid4()
    store.append(dead, "tally", [Opened(name="a")])
    store.append(live, "tally", [Opened(name="b")])
    store.tombstone(dead)
    assert store.append(live, "tally", [Added(amount=1)], expected_version=1).version == 2
    assert store.tombstone_of(live) is None


def test_tombstones_are_listed_in_stream_id_order_page_by_page(store):
    mine = sorted(uuid4() for _ in range(3))
    for sid in reversed(mine):
        store.tombstone(sid, reason=str(sid)[:4])
    listed, after = [], None
    while page := store.tombstones(after, limit=2):
        assert len(page) <= 2
        listed += page
        after = page[-1].stream_id
    assert [t.stream_id for t in listed] == sorted(t.stream_id for t in listed)
    found = [t for t in listed if t.stream_id in mine]
    assert [(t.stream_id, t.reason) for t in found] == [(sid, str(sid)[:4]) for sid in mine]
