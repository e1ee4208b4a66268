"""Appending: expected versions, atomic batches, idempotent retries, validation, the append hooks."""

import time
from uuid import RFC_4122, uuid4

import pytest
from pydantic import BaseModel

from eventstore import hooks
from eventstore.errors import ConcurrencyError, DuplicateEventError, InvalidEventData, UnknownEventType
from eventstore.records import ANY, NO_STREAM, NewEvent
from eventstore.registry import registry
from tests.support import Added, Noted, Opened


def test_no_stream_starts_a_stream_at_version_one(store):
    sid = uuid4()
    result = store.append(sid, "tally", [Opened(name="a"), Added(amount=5)], expected_version=NO_STREAM)
    assert result.versions == [1, 2]
    assert result.positions[0] < result.positions[1]
    assert [e.version for e in store.read_stream(sid)] == [1, 2]


def test_no_stream_on_an_existing_stream_is_a_conflict_and_writes_nothing(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyError) as err:
        store.append(sid, "tally", [Added(amount=1), Added(amount=2)], expected_version=NO_STREAM)
    assert err.value.actual == 1
    assert store.stream_version(sid) == 1


@pytest.mark.parametrize("expected", [0, 1, 3, 4])
def test_exact_version_must_match_exactly(store, expected):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a"), Added(amount=1)], expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyError) as err:
        store.append(sid, "tally", [Added(amount=9)], expected_version=expected)
    assert err.value.actual == 2
    assert [e.version for e in store.read_stream(sid)] == [1, 2]


def test_exact_version_appends_after_it(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")], expected_version=NO_STREAM)
    result = store.append(sid, "tally", [Added(amount=1), Added(amount=2)], expected_version=1)
    assert result.versions == [2, 3]
    assert result.version == 3


def test_any_appends_at_the_end(store):
    sid = uuid4()
    assert store.append(sid, "tally", [Opened(name="a")], expected_version=ANY).version == 1
    assert store.append(sid, "tally", [Added(amount=1)]).version == 2


@pytest.mark.parametrize("bad", [-1, "latest", None, True, 1.5])
def test_expected_version_is_checked(store, bad):
    with pytest.raises(ValueError):
        store.append(uuid4(), "tally", [Opened(name="a")], expected_version=bad)


def test_a_batch_is_all_or_nothing(store):
    """The second event of the batch collides with an event id already in the log: nothing is written."""
    taken = NewEvent(Noted(text="first"), event_id=uuid4())
    other = uuid4()
    store.append(other, "tally", [taken])
    sid = uuid4()
    batch = [NewEvent(Opened(name="a")), NewEvent(Added(amount=1), event_id=taken.event_id), NewEvent(Added(amount=2))]
    with pytest.raises(DuplicateEventError):
        store.append(sid, "tally", batch, expected_version=NO_STREAM)
    assert store.read_stream(sid) == []
    assert store.stream_version(other) == 1


def test_a_large_batch_is_one_atomic_append(store):
    sid = uuid4()
    events = [Added(amount=i + 1) for i in range(250)]
    result = store.append(sid, "tally", events, expected_version=NO_STREAM)
    assert result.versions == list(range(1, 251))
    assert [e.data["amount"] for e in store.read_stream(sid)] == list(range(1, 251))
    with pytest.raises(ConcurrencyError):
        store.append(sid, "tally", events, expected_version=249)
    assert store.stream_version(sid) == 250


def test_retrying_the_same_events_returns_the_first_positions(store):
    sid = uuid4()
    batch = [NewEvent(Opened(name="a"), event_id=uuid4()), NewEvent(Added(amount=3), event_id=uuid4())]
    first = store.append(sid, "tally", batch, expected_version=NO_STREAM)
    head = store.head()
    again = store.append(sid, "tally", batch, expected_version=NO_STREAM)
    assert again == first
    later = [NewEvent(Added(amount=4), event_id=uuid4())]
    third = store.append(sid, "tally", later, expected_version=2)
    assert store.append(sid, "tally", later, expected_version=2) == third
    assert store.append(sid, "tally", later, expected_version=ANY) == third
    assert store.stream_version(sid) == 3
    assert store.head().position == third.position > head.position
    with pytest.raises(ConcurrencyError):  # without ids the store cannot tell a retry: a conflict
        store.append(sid, "tally", [Added(amount=4)], expected_version=2)


def test_the_same_ids_at_other_versions_are_refused(store):
    sid = uuid4()
    batch = [NewEvent(Opened(name="a"), event_id=uuid4())]
    store.append(sid, "tally", batch)
    store.append(sid, "tally", [Added(amount=1)])
    with pytest.raises(DuplicateEventError):
        store.append(sid, "tally", batch, expected_version=2)
    assert store.stream_version(sid) == 2


def test_reusing_an_event_id_at_another_place_is_refused(store):
    event = NewEvent(Noted(text="x"), event_id=uuid4())
    store.append(uuid4(), "tally", [event])
    with pytest.raises(DuplicateEventError):
        store.append(uuid4(), "tally", [event])


def test_invalid_payloads_are_rejected_with_the_field():
    with pytest.raises(InvalidEventData) as err:
        registry.validate("test.Added", {"amount": -5})
    assert err.value.errors[0]["loc"] == ("amount",)
    assert "amount" in str(err.value)
    with pytest.raises(InvalidEventData):
        registry.validate("test.Added", {"amount": "lots"})


def test_unknown_types_are_rejected_and_nothing_is_written(store):
    class NotRegistered(BaseModel):
        x: int = 1

    sid = uuid4()
    with pytest.raises(UnknownEventType):
        store.append(sid, "tally", [Opened(name="a"), NotRegistered()])
    with pytest.raises(UnknownEventType):
        registry.validate("test.Nope", {})
    assert store.stream_version(sid) == 0


def test_metadata_and_ids_are_stored(store):
    sid = uuid4()
    event = NewEvent(Opened(name="a"), metadata={"correlation_id": "c-1", "actor": "ann"}, event_id=uuid4())
    store.append(sid, "tally", [event])
    [recorded] = store.read_stream(sid)
    assert recorded.event_id == event.event_id
    assert recorded.metadata == {"correlation_id": "c-1", "actor": "ann"}
    assert recorded.type == "test.Opened" and recorded.schema_version == 1
    assert recorded.category == "tally" and recorded.bucket == recorded.stream_id.int % 64


def test_events_without_ids_get_distinct_time_ordered_ids_as_stored(store):
    sid = uuid4()
    before_ms = time.time_ns() // 1_000_000
    given = uuid4()
    result = store.append(sid, "tally", [Opened(name="a"), NewEvent(Added(amount=1), event_id=given), Added(amount=2)])
    stored = [e.event_id for e in store.read_stream(sid)]
    assert result.event_ids == stored
    assert stored[1] == given
    made = [stored[0], stored[2]]
    assert len(set(stored)) == 3 and all(i.version == 7 and i.variant == RFC_4122 for i in made)
    # version 7: the first 48 bits are the time of the append in milliseconds
    assert all(before_ms <= i.int >> 80 <= time.time_ns() // 1_000_000 for i in made)
    assert [str(i) for i in result.event_ids] == [str(i) for i in stored]  # built from bytes, same as UUID()


@pytest.mark.parametrize("category", ["", None, 7])
def test_a_category_is_a_non_empty_string(store, category):
    sid = uuid4()
    with pytest.raises(ValueError, match="category"):
        store.append(sid, category, [Opened(name="a")])
    assert store.stream_version(sid) == 0


def test_every_append_tells_the_hooks_unless_suspended(store, monkeypatch):
    heard = []
    monkeypatch.setattr(hooks, "after_append", [lambda using, result: heard.append((using, result))])
    sid = uuid4()
    first = store.append(sid, "tally", [Opened(name="a")])
    with hooks.suspended():
        store.append(sid, "tally", [Added(amount=1)])
    assert heard == [(store.using, first)]
