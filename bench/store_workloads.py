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
import threading
import time
from typing import Any

import psycopg

from bench import common

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


def _single_event_plan(writer: Any, index: int, n: int, n_streams: int) -> Plan:
    """Writer `index`'s n single-event appends at random over its own streams (the same for every system)."""
    seed = 100 + index
    rng = random.Random(seed)
    streams = common.stream_ids(n_streams, seed)
    versions = dict.fromkeys(streams, 0)
    plan: Plan = []
    for data in common.payloads(n, seed):
        sid = rng.choice(streams)
        plan.append((sid, versions[sid], writer.prepare([data])))
        versions[sid] += 1
    return plan


def _writer_process(system: str, index: int, n: int, n_streams: int, barrier: Any, out: Any) -> None:
    import django

    django.setup()
    writer = WRITERS[system]()
    plan = _single_event_plan(writer, index, n, n_streams)
    writer.append(*plan[0])  # connect and prepare before the clock starts
    barrier.wait()
    start = time.time()
    for sid, version, events in plan[1:]:
        writer.append(sid, version, events)
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


W3_WRITERS = 8
BLOCK_TIMEOUT = 300  # seconds a block of appends may take before the run is called failed


def _block_writer(system: str, index: int, sizes: list[int], n_streams: int, start: Any, done: Any) -> None:
    """One W3 writer: its appends in blocks, each started and finished together with its peers."""
    import django

    django.setup()
    writer = WRITERS[system]()
    plan = _single_event_plan(writer, index, sum(sizes), n_streams)
    first = 0
    for size in sizes:
        start.wait(BLOCK_TIMEOUT)
        for sid, version, events in plan[first : first + size]:
            writer.append(sid, version, events)
        first += size
        done.wait(BLOCK_TIMEOUT)
    start.wait(BLOCK_TIMEOUT)  # leave only when every system's blocks are done: exits cost CPU too
    writer.close()


def w3(systems: list[str], scale: float) -> dict[str, tuple[int, float]]:
    """8 writer processes, 2,500 single-event appends each to their own 250 streams."""
    n = max(50, int(2_500 * scale))
    timed = [n // 5] * 4 + [n - 4 * (n // 5)]
    sizes = [max(1, n // 10), *timed]  # a warm-up block of 10 %, then five timed blocks
    ctx = mp.get_context("spawn")
    gates = {system: (ctx.Barrier(W3_WRITERS + 1), ctx.Barrier(W3_WRITERS + 1)) for system in systems}
    procs = [
        ctx.Process(target=_block_writer, args=(system, i, sizes, max(5, int(250 * scale)), *gates[system]))
        for system in systems
        for i in range(W3_WRITERS)
    ]
    for p in procs:
        p.start()
    # Both systems' writers wait at their gates; blocks alternate between the systems (as W1 and
    # W2 alternate appends), so both see the same drift of the machine's speed.
    elapsed = dict.fromkeys(systems, 0.0)
    try:
        for b in range(len(sizes)):
            for system in systems if b % 2 == 0 else systems[::-1]:
                start, done = gates[system]
                start.wait(BLOCK_TIMEOUT)
                began = time.perf_counter()
                done.wait(BLOCK_TIMEOUT)
                if b:
                    elapsed[system] += time.perf_counter() - began
        for start, _ in gates.values():
            start.wait(BLOCK_TIMEOUT)
    except threading.BrokenBarrierError:
        failed = [p.exitcode for p in procs if p.exitcode]
        raise RuntimeError(f"W3: a writer process stopped (exit codes {failed or 'none yet'})") from None
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    return {system: (W3_WRITERS * n, elapsed[system]) for system in systems}


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
    """Reads the log page by page; each `read` goes on from where the last one stopped."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(common.conninfo(), autocommit=True)
        self.rewind()

    def rewind(self) -> None:
        self.after = 0

    def read(self, limit_pages: int | None = None) -> int:
        loads = json.loads
        count, after, pages = 0, self.after, 0
        while limit_pages is None or pages < limit_pages:
            rows = self.conn.execute(RAW_READ, (after,)).fetchall()
            if not rows:
                break
            decoded = [(p, s, v, t, loads(d), loads(m)) for p, s, v, t, d, m in rows]
            count += len(decoded)
            after = decoded[-1][0]
            pages += 1
        self.after = after
        return count

    def close(self) -> None:
        self.conn.close()


class EventfoldReader:
    def __init__(self) -> None:
        from eventstore.records import START
        from eventstore.store import EventStore

        common.use_schema_in_django()
        self.store, self.start = EventStore(), START
        self.rewind()

    def rewind(self) -> None:
        self.checkpoint = self.start

    def read(self, limit_pages: int | None = None) -> int:
        checkpoint, count, pages = self.checkpoint, 0, 0
        while limit_pages is None or pages < limit_pages:
            result = self.store.read_all(checkpoint, limit=1000)
            if not result.events:
                break
            count += len(result.events)
            checkpoint = result.checkpoint
            pages += 1
        self.checkpoint = checkpoint
        return count

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


READERS = {"raw": RawReader, "eventfold": EventfoldReader}


def w4(systems: list[str], scale: float) -> dict[str, tuple[int, float]]:
    """Read a log of 50,000 events (streams of 10) in global order, pages of 1,000, payloads decoded."""
    events = max(1_000, int(50_000 * scale) // 10 * 10)
    for system in systems:
        _fill_log(system, events)
    # Both logs as a reader usually finds them, settled: without this, autovacuum comes by at a
    # moment of its choosing during one system's read, and the first read of each table pays for
    # setting every row's hint bits.
    with psycopg.connect(common.conninfo(), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) events, eventstore_event")
    readers = {system: ReaderProcess(system) for system in systems}
    elapsed = dict.fromkeys(systems, 0.0)
    counts = dict.fromkeys(systems, 0)
    try:
        for reader in readers.values():  # warm-up: the first 10 %, then from the start again
            reader.read(max(1, events // 10_000))
            reader.rewind()
        # Blocks of 5 pages alternate between the systems (as W1 and W2 alternate appends), so
        # that both see the same drift of the machine's speed.
        block = 0
        while any(counts[system] < events for system in systems) and block <= events:
            for system in systems if block % 2 == 0 else systems[::-1]:
                count, seconds = readers[system].read(5)
                counts[system] += count
                elapsed[system] += seconds
            block += 1
    finally:
        for reader in readers.values():
            reader.close()
    for system in systems:
        if counts[system] != events:
            raise RuntimeError(f"W4 {system} read {counts[system]} of {events} events")
    return {system: (events, elapsed[system]) for system in systems}


def timed_read(system: str, events: int, what: str) -> float:
    """Seconds to read the whole scratch log (`events` of them) with one system's reader, after
    a warm-up of 10 % on the same connection."""
    reader = ReaderProcess(system)
    try:
        reader.read(max(1, events // 10_000))
        reader.rewind()
        count, elapsed = reader.read(None)
    finally:
        reader.close()
    if count != events:
        raise RuntimeError(f"{what} {system} read {count} of {events} events")
    return elapsed


class ReaderProcess:
    """A system's reader in a fresh process of its own, reading pages when asked.

    Python's garbage collector walks every live object of the process, and the raw reader
    (which leaves it on, as a plain client would) would otherwise pay for whatever the
    benchmark itself holds: more in its later runs than in its first.
    """

    def __init__(self, system: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_reader_loop, args=(system, child))
        self.proc.start()

    def read(self, pages: int | None) -> tuple[int, float]:
        """(events read, seconds) for up to `pages` more pages (None: to the end)."""
        self.pipe.send(("read", pages))
        return self._reply()

    def rewind(self) -> None:
        self.pipe.send(("rewind", None))
        self._reply()

    def _reply(self) -> Any:
        if not self.pipe.poll(600):
            raise RuntimeError("a reader process did not answer within 10 minutes")
        reply = self.pipe.recv()
        if isinstance(reply, str):
            raise RuntimeError(f"a reader process failed: {reply}")
        return reply

    def close(self) -> None:
        if self.proc.is_alive():
            self.pipe.send(("stop", None))
        self.proc.join(timeout=60)


def _reader_loop(system: str, pipe: Any) -> None:
    import django

    django.setup()
    reader = READERS[system]()
    try:
        while (request := pipe.recv())[0] != "stop":
            op, pages = request
            try:
                if op == "rewind":
                    reader.rewind()
                    pipe.send(None)
                else:
                    start = time.perf_counter()
                    count = reader.read(limit_pages=pages)
                    pipe.send((count, time.perf_counter() - start))
            except Exception as exc:
                pipe.send(repr(exc))
                raise
    finally:
        reader.close()


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
