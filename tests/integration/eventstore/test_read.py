"""Reading streams and the whole log; the read query's plan."""

from uuid import uuid4

from django.db import connection

from eventstore.records import BUCKETS, START, Checkpoint
from eventstore.statements import ORDERED_SCAN_ON, read_all_statement
from tests.support import Added, Noted, Opened


def test_read_stream_forwards_backwards_and_limited(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="a")] + [Added(amount=i) for i in range(1, 6)])
    assert [e.version for e in store.read_stream(sid)] == [1, 2, 3, 4, 5, 6]
    assert [e.version for e in store.read_stream(sid, from_version=3, limit=2)] == [3, 4]
    assert [e.version for e in store.read_stream(sid, backwards=True, limit=3)] == [6, 5, 4]
    assert [e.version for e in store.read_stream(sid, from_version=2, backwards=True)] == [2, 1]
    assert store.read_stream(uuid4()) == []


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
        seen += [e.position for e in page.events]
        checkpoint = page.checkpoint
    assert seen == appended
    assert store.read_all(checkpoint).checkpoint == checkpoint  # nothing new: the same cursor again


def test_read_all_filters(store):
    start = store.head()
    a, b = uuid4(), uuid4()
    store.append(a, "tally", [Opened(name="a"), Added(amount=1)])
    store.append(b, "note", [Noted(text="b")])
    assert {e.stream_id for e in store.read_all(start, categories=["note"]).events} == {b}
    assert [e.type for e in store.read_all(start, types=["test.Added"]).events] == ["test.Added"]
    in_bucket = store.read_all(start, bucket=a.int % BUCKETS).events
    assert a in {e.stream_id for e in in_bucket}
    assert all(e.bucket == a.int % BUCKETS for e in in_bucket)


def test_head_and_checkpoint_cursor(store):
    sid = uuid4()
    result = store.append(sid, "tally", [Opened(name="a")])
    head = store.head()
    assert head.position == result.position
    assert Checkpoint.decode(head.encode()) == head
    assert Checkpoint(0, 0) == START


def test_the_read_walks_the_index_with_both_bounds(store):
    """EXPLAIN shows an ordered index scan, the checkpoint and the horizon as index conditions, no sort."""
    for bucket in (False, True):
        query = read_all_statement(bucket, False, False).decode()
        query = query.replace("%(tx)s", "'0'").replace("%(pos)s", "0").replace("%(limit)s", "1000")
        query = query.replace("%(bucket)s", "3")
        with connection.cursor() as cur, connection.connection.transaction():
            cur.execute(ORDERED_SCAN_ON)
            cur.execute("EXPLAIN " + query)
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Index Scan using eventstore_event_" in plan, plan
        assert "Sort" not in plan, plan
        cond = next(line for line in plan.splitlines() if "Index Cond" in line)
        assert "ROW(tx_id, global_position) > ROW(" in cond and "pg_snapshot_xmin" in cond, plan
