"""W1-W5 of docs/benchmarks.md, each for the two systems of `bench.systems`: "raw" (the plain
psycopg 3 reference table) and "eventfold" (the public EventStore API).

Every function returns (events, seconds) for the timed part; W5 returns
(missed, written). Writer processes are spawned fresh and wait on a barrier,
so start-up never counts. Whatever uses Django's connection, here or in a
spawned process, runs inside `common.scratch()`.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django
import psycopg

from bench import common
from bench.reader_process import ReaderProcess
from bench.systems import WRITERS
from eventstore.records import START
from eventstore.store import EventStore

Plan = list[tuple[Any, int, list[dict]]]  # (stream id, version before, payloads) per append


def _random_appends(n: int, n_streams: int, seed: int) -> Plan:
    """n single-event appends at random over n_streams new streams, each at its stream's version."""
    rng = random.Random(seed)
    streams = common.stream_ids(n_streams, seed)
    versions = dict.fromkeys(streams, 0)
    plan: Plan = []
    for data in common.payloads(n, seed):
        sid = rng.choice(streams)
        plan.append((sid, versions[sid], [data]))
        versions[sid] += 1
    return plan


def _interleaved(plan: Plan, systems: list[str], block: int) -> dict[str, tuple[int, float]]:
    """Run the same plan for every system, alternating blocks of `block` appends between them,
    so that both see the same drift of the machine's speed. The first 10 % is warm-up."""
    with common.scratch():
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
    plan = _random_appends(n + n // 10, max(10, int(2_000 * scale)), seed=1)
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
    return [(sid, version, writer.prepare(datas)) for sid, version, datas in _random_appends(n, n_streams, 100 + index)]


def _writer_process(system: str, index: int, n: int, n_streams: int, barrier: Any, out: Any) -> None:
    django.setup()
    with common.scratch():
        writer = WRITERS[system]()
        plan = _single_event_plan(writer, index, n, n_streams)
        writer.append(*plan[0])  # connect and prepare before the clock starts
        barrier.wait()
        for sid, version, events in plan[1:]:
            writer.append(sid, version, events)
        out.put(n)
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


def _join(procs: list, out: Any) -> None:
    for _ in procs:
        out.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a writer process failed with exit code {p.exitcode}")


W3_WRITERS = 8
BLOCK_TIMEOUT = 300  # seconds a block of appends may take before the run is called failed


def _block_writer(system: str, index: int, sizes: list[int], n_streams: int, start: Any, done: Any) -> None:
    """One W3 writer: its appends in blocks, each started and finished together with its peers."""
    django.setup()
    with common.scratch():
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
    datas = common.payloads(events, seed=4)
    streams = common.stream_ids(events // 10, seed=4)
    with common.scratch():
        writer = WRITERS[system]()
        try:
            for i, sid in enumerate(streams):
                writer.append(sid, 0, writer.prepare(datas[10 * i : 10 * i + 10]))
        finally:
            writer.close()


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


Poll = Callable[[Any], tuple[list[int], Any]]  # checkpoint -> (positions read, the next checkpoint)


@contextmanager
def _subscriber(system: str) -> Iterator[tuple[Poll, Any]]:
    """W5's reader of one system: how it polls a page, and where it starts."""
    if system == "raw":
        with psycopg.connect(common.conninfo(), autocommit=True) as conn:

            def poll_raw(after: int) -> tuple[list[int], int]:
                rows = conn.execute(
                    "SELECT global_position FROM events WHERE global_position > %s ORDER BY global_position LIMIT 1000",
                    (after,),
                ).fetchall()
                return [r[0] for r in rows], rows[-1][0] if rows else after

            yield poll_raw, 0
    else:
        with common.scratch():
            store = EventStore()

            def poll_eventfold(after: Any) -> tuple[list[int], Any]:
                result = store.read_all(after, limit=1000)
                return [e.position for e in result.events], result.checkpoint

            yield poll_eventfold, START


def w5(system: str, scale: float) -> tuple[int, int]:
    """(missed, written): 4 writers while one reader polls and checkpoints."""
    n = max(50, int(2_500 * scale))
    procs, barrier, out = _spawn_writers(system, 4, n, max(5, int(250 * scale)))
    seen: set[int] = set()
    duplicates = 0
    with _subscriber(system) as (poll, checkpoint):
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
    written = 4 * n
    if duplicates:
        raise RuntimeError(f"W5 {system}: {duplicates} events read twice")
    return written - len(seen), written
