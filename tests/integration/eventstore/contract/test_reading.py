"""Reading: streams in both directions, the whole log by checkpoints and filters, upcasting."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from pydantic import BaseModel

from eventstore.records import BUCKETS, START, Checkpoint, NewEvent
from eventstore.registry import EventRegistry
from tests.support import Added, Noted, Opened


def test_read_stream_forwards_backwards_and_limited(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")] + [Added(amount=i) for i in range(1, 6)])
    assert [e.version for e in store.read_stream(sid)] == [1, 2, 3, 4, 5, 6]
    assert [e.version for e in store.read_stream(sid, from_version=3, limit=2)] == [3, 4]
    assert [e.version for e in store.read_stream(sid, backwards=True, limit=3)] == [6, 5, 4]
    assert [e.version for e in store.read_stream(sid, from_version=2, backwards=True)] == [2, 1]
    assert [e.version for e in store.read_stream(sid, from_version=2, to_version=4)] == [2, 3, 4]
    assert store.read_stream(sid, limit=0) == []
    assert store.read_stream(uuid4()) == []


def test_read_stream_until_a_time(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")])
    [event] = store.read_stream(sid)
    assert store.read_stream(sid, recorded_until=event.recorded_at) == [event]
    assert store.read_stream(sid, recorded_until=event.recorded_at - timedelta(microseconds=1)) == []
    assert event.recorded_at <= datetime.now(UTC)


def test_read_all_pages_in_order_without_gaps(store):
    start = store.head()
    sids = [uuid4() for _ in range(5)]
    appended = []
    for round_ in range(3):
        for sid in sids:
            appended += store.append(sid, "tally", [Added(amount=round_ + 1)]).positions
    seen, checkpoint = [], start
    while True:
        page = store.read_all(checkpoint, limit=4)
        if not page.events:
            break
        assert [e.checkpoint for e in page.events] == sorted(e.checkpoint for e in page.events)
        seen += [e.position for e in page.events]
        checkpoint = page.checkpoint
    assert seen == appended
    assert store.read_all(checkpoint).checkpoint == checkpoint  # nothing new: the same cursor again
    assert checkpoint == store.head()


def test_read_all_filters(store):
    start = store.head()
    a, b = uuid4(), uuid4()
    store.append(a, "tally", [Opened(name="a"), Added(amount=1)])
    store.append(b, "note", [NewEvent(Noted(text="b"), metadata={"correlation_id": "c-9"})])
    assert {e.stream_id for e in store.read_all(start, categories=["note"]).events} == {b}
    assert [e.type for e in store.read_all(start, types=["test.Added"]).events] == ["test.Added"]
    assert [e.stream_id for e in store.read_all(start, correlation_id="c-9").events] == [b]
    in_bucket = store.read_all(start, bucket=a.int % BUCKETS).events
    assert a in {e.stream_id for e in in_bucket}
    assert all(e.bucket == a.int % BUCKETS for e in in_bucket)
    filtered = store.read_all(start, categories=["tally"], limit=1)
    assert [e.version for e in filtered.events] == [1]
    assert [e.version for e in store.read_all(filtered.checkpoint, categories=["tally"]).events] == [2]


def test_head_and_checkpoint_cursor(store):
    sid = uuid4()
    result = store.append(sid, "tally", [Opened(name="a")])
    head = store.head()
    assert head.position == result.position
    assert Checkpoint.decode(head.encode()) == head
    assert Checkpoint(0, 0) == START


def test_old_schema_versions_are_upcast_on_read(store):
    old, new = EventRegistry(), EventRegistry()

    @old.register("contract.Renamed", 1)
    class RenamedV1(BaseModel):
        label: str

    @new.register("contract.Renamed", 2)
    class RenamedV2(BaseModel):
        name: str
        source: str

    @new.upcaster("contract.Renamed", from_version=1)
    def v1_to_v2(data: dict) -> dict:
        return {"name": data["label"], "source": "v1"}

    sid, start = uuid4(), store.head()
    store.registry = old
    store.append(sid, "contract", [RenamedV1(label="a")])
    store.registry = new
    store.append(sid, "contract", [RenamedV2(name="b", source="v2")])
    expected = [(2, {"name": "a", "source": "v1"}), (2, {"name": "b", "source": "v2"})]
    assert [(e.schema_version, e.data) for e in store.read_stream(sid)] == expected
    assert [(e.schema_version, e.data) for e in store.read_all(start).events] == expected


def test_each_read_returns_its_own_data(store):
    sid = uuid4()
    store.append(sid, "tally", [NewEvent(Opened(name="a"), metadata={"actor": "ann"})])
    [first] = store.read_stream(sid)
    first.data["name"], first.metadata["actor"] = "changed", "changed"
    [again] = store.read_stream(sid)
    assert again.data == {"name": "a"} and again.metadata == {"actor": "ann"}
