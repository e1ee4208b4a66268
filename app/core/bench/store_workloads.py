"""W1-W5 of BENCHMARKS.md, each for two systems: "raw" (the plain psycopg 3
reference table) and "eventfold" (the public EventStore API).

Every function returns (events, seconds) for the timed part; W5 returns
(missed, written). Writer processes are spawned fresh and wait on a barrier,
so start-up never counts.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import time
from typing import Any

import psycopg

from app.core.bench import common

RAW_INSERT = "INSERT INTO events (stream_id, version, type, data, metadata) VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)"
RAW_READ = (
    "SELECT global_position, stream_id, version, type, data::text, metadata::text FROM events "
    "WHERE global_position > %s ORDER BY global_position LIMIT 1000"
)
TYPE = "bench.Recorded"
CATEGORY = "bench"


# -- appenders: one append of `datas` to a stream at `version` (0: new stream) ----------------
class RawWriter:
    def __init__(self) -> None:
        self.conn = psycopg.connect(common.conninfo(), autocommit=True)
        self.meta = json.dumps(common.metadata())

    def prepare(self, datas: list[dict]) -> list[dict]:
        return datas  # dicts are its events: serialised in each append, as the reference does

    def append(self, stream_id: Any, version: int, datas: list[dict]) -> None:
        sid = str(stream_id)
        if len(datas) == 1:
            self.conn.execute(RAW_INSERT, (sid, version + 1, TYPE, json.dumps(datas[0]), self.meta))
            return
        rows = ", ".join(["(%s, %s, %s, %s::jsonb, %s::jsonb)"] * len(datas))
        params: list[Any] = []
        for i, d in enumerate(datas, start=version + 1):
            params += [sid, i, TYPE, json.dumps(d), self.meta]
        self.conn.execute(f"INSERT INTO events (stream_id, version, type, data, metadata) VALUES {rows}", params)

    def close(self) -> None:
        self.conn.close()


class EventfoldWriter:
    def __init__(self) -> None:
        from eventstore.records import NO_STREAM, NewEvent
        from eventstore.store import EventStore

        common.use_schema_in_django()
        self.store, self.new, self.no_stream = EventStore(), NewEvent, NO_STREAM
        self.meta = common.metadata()

    def prepare(self, datas: list[dict]) -> list[Any]:
        """The application's events, made before they are appended (as the raw side's dicts are):
        the append validates and serialises them, which is what is timed."""
        return [self.new(common.Recorded.model_validate(d), self.meta) for d in datas]

    def append(self, stream_id: Any, version: int, events: list[Any]) -> None:
        self.store.append(stream_id, CATEGORY, events, expected_version=version or self.no_stream)

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


WRITERS = {"raw": RawWriter, "eventfold": EventfoldWriter}


Plan = list[tuple[Any, int, list[dict]]]  # (stream id, version before, payloads) per append
BLOCK_SECONDS_TARGET = 0.2


def _interleaved(plan: Plan, systems: list[str], block: int) -> dict[str, tuple[int, float]]:
    """Run the same plan for every system, alternating blocks of `block` appends between them,
    so that both see the same drift of the machine's speed. The first 10 % is warm-up."""
    writers = {system: WRITERS[system]() for system in systems}
    plans = {system: [(sid, v, writers[system].prepare(d)) for sid, v, d in plan] for system in systems}
    warm = len(plan) // 11
    elapsed = dict.fromkeys(systems, 0.0)
    events = dict.fromkeys(systems, 0)
    try:
        for system in systems:
            for sid, version, datas in plans[system][:warm]:
                writers[system].append(sid, version, datas)
        for b, first in enumerate(range(warm, len(plan), block)):
            for system in systems if b % 2 == 0 else systems[::-1]:
                chunk = plans[system][first : first + block]
                writer = writers[system]
                start = time.perf_counter()
                for sid, version, datas in chunk:
                    writer.append(sid, version, datas)
                elapsed[system] += time.perf_counter() - start
                events[system] += sum(len(d) for _, _, d in chunk)
    finally:
        for writer in writers.values():
            writer.close()
    return {system: (events[system], elapsed[system]) for system in systems}


def w1(systems: list[str], scale: float) -> dict[str, tuple[int, float]]:
    """20,000 single-event appends at random over 2,000 new streams, exact expected version."""
    n = max(100, int(20_000 * scale))
    total = n + n // 10
    rng = random.Random(1)
    streams = common.stream_ids(max(10, int(2_000 * scale)), seed=1)
    versions = dict.fromkeys(streams, 0)
    datas = common.payloads(total, seed=1)
    plan: Plan = []
    for i in range(total):
        sid = rng.choice(streams)
        plan.append((sid, versions[sid], [datas[i]]))
        versions[sid] += 1
    return _interleaved(plan, systems, block=200)


def w2(systems: list[str], scale: float) -> dict[str, tuple[int, float]]:
    """2,000 appends of 10 events, each to a new stream."""
    n = max(20, int(2_000 * scale))
    total = n + n // 10
    datas = common.payloads(10 * total, seed=2)
    streams = common.stream_ids(total, seed=2)
    plan: Plan = [(streams[i], 0, datas[10 * i : 10 * i + 10]) for i in range(total)]
    return _interleaved(plan, systems, block=50)


def one_at_a_time(fn: Any) -> Any:
    """Adapt a per-system workload to the runner's (systems, scale) signature: systems in turn."""

    def run(systems: list[str], scale: float) -> dict[str, tuple[int, float]]:
        out = {}
        for system in systems:
            common.reset_schema()
            out[system] = fn(system, scale)
        return out

    run.__doc__ = fn.__doc__
    return run


def _writer_process(system: str, index: int, n: int, n_streams: int, barrier: Any, out: Any) -> None:
    import django

    django.setup()
    writer = WRITERS[system]()
    seed = 100 + index
    rng = random.Random(seed)
    streams = common.stream_ids(n_streams, seed)
    versions = dict.fromkeys(streams, 0)
    datas = common.payloads(n, seed)
    picks = [rng.choice(streams) for _ in range(n)]
    events = [writer.prepare([d]) for d in datas]
    writer.append(picks[0], 0, events[0])  # connect and prepare before the clock starts
    versions[picks[0]] = 1
    barrier.wait()
    start = time.time()
    for i in range(1, n):
        sid = picks[i]
        writer.append(sid, versions[sid], events[i])
        versions[sid] += 1
    out.put((start, time.time(), n))
    writer.close()


def _spawn_writers(system: str, processes: int, n: int, n_streams: int) -> tuple[list, Any, Any]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_writer_process, args=(system, i, n, n_streams, barrier, out)) for i in range(processes)
    ]
    for p in procs:
        p.start()
    return procs, barrier, out


def _join(procs: list, out: Any) -> list[tuple[float, float, int]]:
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a writer process failed with exit code {p.exitcode}")
    return results


@one_at_a_time
def w3(system: str, scale: float) -> tuple[int, float]:
    """8 writer processes, 2,500 single-event appends each to their own 250 streams."""
    n = max(50, int(2_500 * scale))
    procs, barrier, out = _spawn_writers(system, 8, n, max(5, int(250 * scale)))
    barrier.wait()
    results = _join(procs, out)
    total = sum(r[2] for r in results) - len(results)  # the first append of each is before the clock
    return total, max(r[1] for r in results) - min(r[0] for r in results)


def _fill_log(system: str, events: int) -> None:
    writer = WRITERS[system]()
    datas = common.payloads(events, seed=4)
    streams = common.stream_ids(events // 10, seed=4)
    try:
        for i, sid in enumerate(streams):
            writer.append(sid, 0, writer.prepare(datas[10 * i : 10 * i + 10]))
    finally:
        writer.close()


class RawReader:
    def __init__(self) -> None:
        self.conn = psycopg.connect(common.conninfo(), autocommit=True)

    def read(self, limit_pages: int | None = None) -> int:
        loads = json.loads
        count, after, pages = 0, 0, 0
        while limit_pages is None or pages < limit_pages:
            rows = self.conn.execute(RAW_READ, (after,)).fetchall()
            if not rows:
                break
            decoded = [(p, s, v, t, loads(d), loads(m)) for p, s, v, t, d, m in rows]
            count += len(decoded)
            after = decoded[-1][0]
            pages += 1
        return count

    def close(self) -> None:
        self.conn.close()


class EventfoldReader:
    def __init__(self) -> None:
        from eventstore.records import START
        from eventstore.store import EventStore

        common.use_schema_in_django()
        self.store, self.start = EventStore(), START

    def read(self, limit_pages: int | None = None) -> int:
        checkpoint, count, pages = self.start, 0, 0
        while limit_pages is None or pages < limit_pages:
            result = self.store.read_all(checkpoint, limit=1000)
            if not result.events:
                break
            count += len(result.events)
            checkpoint = result.checkpoint
            pages += 1
        return count

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


READERS = {"raw": RawReader, "eventfold": EventfoldReader}


@one_at_a_time
def w4(system: str, scale: float) -> tuple[int, float]:
    """Read a log of 50,000 events (streams of 10) in global order, pages of 1,000, payloads decoded."""
    events = max(1_000, int(50_000 * scale) // 10 * 10)
    _fill_log(system, events)
    return events, timed_read(system, events, "W4")


def timed_read(system: str, events: int, what: str) -> float:
    """Seconds to read the whole scratch log (`events` of them) with one system's reader, after
    a warm-up of 10 % on the same connection."""
    reader = READERS[system]()
    try:
        reader.read(limit_pages=max(1, events // 10_000))
        start = time.perf_counter()
        count = reader.read()
        elapsed = time.perf_counter() - start
    finally:
        reader.close()
    if count != events:
        raise RuntimeError(f"{what} {system} read {count} of {events} events")
    return elapsed


def w5(system: str, scale: float) -> tuple[int, int]:
    """(missed, written): 4 writers while one reader polls and checkpoints."""
    n = max(50, int(2_500 * scale))
    procs, barrier, out = _spawn_writers(system, 4, n, max(5, int(250 * scale)))
    seen: set[int] = set()
    duplicates = 0
    if system == "raw":
        conn = psycopg.connect(common.conninfo(), autocommit=True)

        def poll(after: int) -> tuple[list[int], int]:
            rows = conn.execute(
                "SELECT global_position FROM events WHERE global_position > %s ORDER BY global_position LIMIT 1000",
                (after,),
            ).fetchall()
            return [r[0] for r in rows], rows[-1][0] if rows else after

        checkpoint: Any = 0
    else:
        from eventstore.records import START
        from eventstore.store import EventStore

        common.use_schema_in_django()
        store = EventStore()

        def poll(after: Any) -> tuple[list[int], Any]:
            result = store.read_all(after, limit=1000)
            return [e.position for e in result.events], result.checkpoint

        checkpoint = START
    barrier.wait()
    writers_done = False
    quiet_polls = 0
    while quiet_polls < 3:
        positions, checkpoint = poll(checkpoint)
        for p in positions:
            if p in seen:
                duplicates += 1
            seen.add(p)
        if not writers_done:
            writers_done = all(not p.is_alive() for p in procs)
        elif not positions:
            quiet_polls += 1
    _join(procs, out)
    if system == "raw":
        conn.close()
    written = 4 * n
    if duplicates:
        raise RuntimeError(f"W5 {system}: {duplicates} events read twice")
    return written - len(seen), written
