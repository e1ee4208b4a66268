"""Concurrency against a real PostgreSQL: racing writers, late commits, a held horizon, a stress run."""

import multiprocessing as mp
import threading
from collections import defaultdict
from uuid import uuid4

import psycopg
import pytest
from django.db import connection, connections, transaction

from eventstore.errors import ConcurrencyError
from eventstore.records import NO_STREAM
from eventstore.store import EventStore
from tests.support import Added, Opened, appender_process, poller_process


def _in_thread(fn):
    """Run fn in a thread with its own Django connection, closed afterwards."""

    def run(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return run


def _libpq_conninfo() -> str:
    s = connection.settings_dict
    parts = {"dbname": s["NAME"], "user": s.get("USER"), "host": s.get("HOST"), "port": s.get("PORT")}
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v})


def test_racing_writers_at_the_same_version_exactly_one_wins(store):
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="race")], expected_version=NO_STREAM)
    threads, barrier = 8, threading.Barrier(8)
    outcomes: list[str] = []

    @_in_thread
    def writer(i: int) -> None:
        barrier.wait()
        try:
            EventStore().append(sid, "tally", [Added(amount=i + 1)], expected_version=1)
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("lost")

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert [e.version for e in store.read_stream(sid)] == [1, 2]


def test_a_late_commit_is_never_skipped(store):
    """A appends and stays open; B appends and commits. A reader sees neither until A commits,
    then both, A's first; a checkpoint taken in between does not lose A's event."""
    before = store.head()
    a_appended, a_may_commit, a_done = threading.Event(), threading.Event(), threading.Event()
    a_stream, b_stream = uuid4(), uuid4()

    @_in_thread
    def transaction_a() -> None:
        with transaction.atomic():
            EventStore().append(a_stream, "tally", [Opened(name="A")])
            a_appended.set()
            assert a_may_commit.wait(30)
        a_done.set()

    thread = threading.Thread(target=transaction_a)
    thread.start()
    try:
        assert a_appended.wait(30)
        b = EventStore().append(b_stream, "tally", [Opened(name="B")])  # autocommit: B is committed
        while_open = store.read_all(before)
        assert while_open.events == [], "B is beyond the horizon while A is open"
        checkpoint = while_open.checkpoint
        assert checkpoint == before
    finally:
        a_may_commit.set()
        thread.join()
    assert a_done.is_set()
    after = store.read_all(checkpoint)
    assert [e.stream_id for e in after.events] == [a_stream, b_stream]
    assert after.events[1].position == b.position
    # A took the lower position but committed last: exactly the event a position-ordered reader skips
    assert after.events[0].position < b.position
    assert after.events[0].tx_id < after.events[1].tx_id


def test_an_open_write_transaction_elsewhere_delays_readers_but_loses_nothing(store):
    before = store.head()
    with psycopg.connect(_libpq_conninfo()) as other:
        other.execute("CREATE TEMP TABLE IF NOT EXISTS holder (x int)")
        other.execute("INSERT INTO holder VALUES (1)")  # a write: this transaction now holds the horizon
        sids = [uuid4() for _ in range(5)]
        for sid in sids:
            store.append(sid, "tally", [Opened(name="waiting")])
        assert store.read_all(before).events == []
        other.rollback()
    seen = store.read_all(before).events
    assert [e.stream_id for e in seen] == sids


@pytest.mark.slow
def test_stress_eight_writers_two_readers_see_everything_once_in_order(store, test_db_name):
    writers, appends, streams = 8, 250, 20
    start = tuple(store.head())
    ctx = mp.get_context("spawn")
    barrier, results, expected = ctx.Barrier(writers), ctx.Queue(), ctx.Value("i", 0)
    readers = [ctx.Process(target=poller_process, args=(test_db_name, start, expected, results)) for _ in range(2)]
    procs = [
        ctx.Process(target=appender_process, args=(test_db_name, i, appends, streams, barrier, results))
        for i in range(writers)
    ]
    for p in readers + procs:
        p.start()
    final_versions: dict[str, int] = {}
    seen_by_reader = []
    for _ in range(writers):
        final_versions.update(results.get(timeout=180))
    expected.value = writers * appends
    for _ in range(2):
        seen_by_reader.append(results.get(timeout=180))
    for p in readers + procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sum(final_versions.values()) == writers * appends
    for seen in seen_by_reader:
        positions = [p for _, _, p in seen]
        assert len(positions) == len(set(positions)) == writers * appends, "each event exactly once"
        by_stream: dict[str, list[int]] = defaultdict(list)
        for stream_id, version, _ in seen:
            by_stream[stream_id].append(version)
        assert {s: v[-1] for s, v in by_stream.items()} == final_versions
        assert all(v == list(range(1, len(v) + 1)) for v in by_stream.values()), "each stream in version order"
