"""`manage.py benchmark --big --events N`: does a log of N events (10,000,000 by default) feel like
an empty one? Not a workload of the table in docs/benchmarks.md, a mode of its own.

The scratch schema gets every migration. A probe measures, on the log as it is:

- W1: 1,000 single-event appends at random over 100 new streams through `EventStore.append`
  with the exact expected version; events/s and the p99 of one append.
- W4: catch-up reading: 20,000 events appended by the probe (streams of 10), then read back with
  `EventStore.read_all` in pages of 1,000 from the checkpoint before them, payloads decoded;
  at N this reads from a checkpoint deep in the log.
- P4: two new accounts of 10,000 events, one with snapshots and one without, loaded through
  `Repository.load` (`bench.snapshot_workload`).
- the time machine: `browse.state_at` of the first P4 account at version 5,000 (older than its
  snapshot, so it folds from the start of the stream).
- the console, through Django's test client as a logged-in superuser: the first timeline page,
  the first P4 account's stream page and the catalog.

At N only (on the empty log there is nothing to fold), every ledger projection is then rebuilt
from zero, one after another (blue/green, in this process, as P1 does): `rebuild` reports each
one's events/s over the whole log and `all_eps`, the log's events over their total seconds.

W1 and W4 are taken four times per probe, the first left out (the median of the other three is
reported); the rest five times after one left out.
The run probes the empty log, grows it to N events of the ledger's shape (accounts of 100
events: opened, then deposits and withdrawals, saved through `Repository.save` in transactions
of 10 accounts, snapshots every `EVENTSTORE["SNAPSHOT_EVERY"]` events, as the application
saves; the load rate is reported), probes again, and reports each figure at N over the same
figure at 0 (the same-run reference), plus the bytes per event of the event table, its TOAST
and each of its indexes. The scratch schema is dropped at the end.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connections, transaction
from django.test import Client

from app.ledger.domain.account import Account
from bench import common, snapshot_workload
from bench.backlog_workload import ledger_account, rebuild_every_projection
from eventstore import browse
from eventstore.records import NO_STREAM, NewEvent
from eventstore.repository import Repository
from eventstore.store import EventStore

RUNS = 3
SAMPLES = 5
ACCOUNT_EVENTS = 100
ACCOUNTS_PER_TRANSACTION = 10
META = common.metadata()


def _w1(store: EventStore, seed: int, appends: int = 1_000, streams: int = 100) -> dict[str, float]:
    rng = random.Random(seed)
    ids = [UUID(int=rng.getrandbits(128), version=4) for _ in range(streams)]
    versions = dict.fromkeys(ids, 0)
    datas = common.payloads(appends, seed)
    latencies = []
    began = time.perf_counter()
    for data in datas:
        sid = rng.choice(ids)
        start = time.perf_counter()
        event = NewEvent(common.Recorded.model_validate(data), META)
        store.append(sid, "bench", [event], expected_version=versions[sid] or NO_STREAM)
        latencies.append(time.perf_counter() - start)
        versions[sid] += 1
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"eps": appends / elapsed, "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def _w4(store: EventStore, seed: int, events: int = 20_000) -> float:
    before = store.head()
    datas = common.payloads(events, seed)
    for i, sid in enumerate(common.stream_ids(events // 10, seed)):
        with transaction.atomic():
            batch = [NewEvent(common.Recorded.model_validate(d), META) for d in datas[10 * i : 10 * i + 10]]
            store.append(sid, "bench", batch, expected_version=NO_STREAM)
    with connections["default"].cursor() as cur:
        cur.execute("VACUUM (ANALYZE) eventstore_event")
    after, read = before, 0
    start = time.perf_counter()
    while read < events:
        result = store.read_all(after, limit=1_000, include_archived=True)
        if not result.events:
            break
        read += len(result.events)
        after = result.checkpoint
    elapsed = time.perf_counter() - start
    if read != events:
        raise RuntimeError(f"W4 read {read} of the {events} events appended after the checkpoint")
    return events / elapsed


def _timed_ms(fn: Callable[[], Any], samples: int = SAMPLES) -> float:
    fn()  # warm-up
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _page(client: Client, url: str) -> Callable[[], None]:
    def get() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")

    return get


def _checkpoint() -> bool:
    """A CHECKPOINT before a probe, so that neither probe pays for the writes before it (at N, the
    growth's dirty pages would otherwise be flushed while W1 runs). False when the role may not
    (superuser, or PostgreSQL 15's pg_checkpoint): the probe runs all the same."""
    try:
        with connections["default"].cursor() as cur:
            cur.execute("CHECKPOINT")
    except DatabaseError:
        return False
    return True


def probe(size: int, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    store = EventStore()
    checkpointed = _checkpoint()
    # One round of each first, left out: the first appends and reads after a migration or a bulk
    # load pay for cold caches, prepared statements and the checkpoint the load started.
    w1 = [_w1(store, seed + i) for i in range(RUNS + 1)][1:]
    w4 = [_w4(store, seed + 10 + i) for i in range(RUNS + 1)][1:]
    snapshotted = snapshot_workload.seed_account(10_000, 100)
    p4 = snapshot_workload.measure(snapshotted, snapshot_workload.seed_account(10_000, 0))
    time_machine_ms = _timed_ms(lambda: browse.state_at(Account, snapshotted, version=5_000, store=store))
    user = get_user_model().objects.create_superuser(f"big-{uuid4().hex[:8]}", password=uuid4().hex)
    client = Client()
    client.force_login(user)
    pages = {
        "timeline_ms": _timed_ms(_page(client, "/timeline/")),
        "stream_ms": _timed_ms(_page(client, f"/streams/{snapshotted}/")),
        "catalog_ms": _timed_ms(_page(client, "/catalog/")),
    }
    result = {
        "log_events": size,
        "checkpointed": checkpointed,
        "w1_eps": round(statistics.median(r["eps"] for r in w1), 1),
        "w1_runs": [round(r["eps"], 1) for r in w1],
        "w1_p99_ms": round(statistics.median(r["p99_ms"] for r in w1), 3),
        "w4_eps": round(statistics.median(w4), 1),
        "w4_runs": [round(x, 1) for x in w4],
        "snapshot_ms": p4["snapshot_ms"],
        "full_ms": p4["full_ms"],
        "time_machine_ms": round(time_machine_ms, 3),
        **{k: round(v, 3) for k, v in pages.items()},
    }
    log(f"  at {size:,} events: " + ", ".join(f"{k} {v}" for k, v in result.items() if not k.endswith("runs")))
    return result


def grow(events: int, log: Callable[[str], None]) -> tuple[int, float]:
    """About `events` ledger events (accounts of 100), saved as the application saves; (written, seconds)."""
    repo = Repository(Account, EventStore())
    rng = random.Random(11)
    written, started, last = 0, time.perf_counter(), time.perf_counter()
    while written < events:
        with transaction.atomic():
            for _ in range(ACCOUNTS_PER_TRANSACTION):
                account = ledger_account(rng, ACCOUNT_EVENTS, owner="Big owner", largest_deposit=5_000)
                written += len(account.pending_events)
                repo.save(account, metadata={"actor": "benchmark"})
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"  grown to {written:,} events, {written / (last - started):,.0f} events/s")
    return written, time.perf_counter() - started


def disk() -> dict[str, Any]:
    """Bytes per event of the event table, its TOAST and each index (sizes after a VACUUM)."""
    with connections["default"].cursor() as cur:
        cur.execute("VACUUM (ANALYZE) eventstore_event")
        cur.execute("SELECT count(*) FROM eventstore_event")
        count = cur.fetchone()[0]
        cur.execute(
            "SELECT pg_relation_size(c.oid), COALESCE(pg_total_relation_size(c.reltoastrelid), 0), "
            "pg_total_relation_size(c.oid) FROM pg_class c WHERE c.oid = 'eventstore_event'::regclass"
        )
        table, toast, total = cur.fetchone()
        cur.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = 'eventstore_event'::regclass ORDER BY 1"
        )
        indexes = dict(cur.fetchall())
    per = lambda n: round(n / count, 1)  # noqa: E731
    return {
        "events": count,
        "total_bytes": total,
        "bytes_per_event": per(total),
        "table_bytes_per_event": per(table),
        "toast_bytes_per_event": per(toast),
        "index_bytes_per_event": {name: per(size) for name, size in indexes.items()},
    }


FLAT = ("w1_eps", "w4_eps")  # within 15 % of the empty log
BOUNDED_MS = ("timeline_ms", "stream_ms", "catalog_ms")  # under 200 ms


def rebuilds(events: int, log: Callable[[str], None]) -> dict[str, Any]:
    seconds = rebuild_every_projection(events)
    eps = {name: round(events / s, 1) for name, s in seconds.items()}
    result = {
        "events": events,
        "eps": eps,
        "all_eps": round(events / sum(seconds.values()), 1),
        "all_seconds": round(sum(seconds.values()), 3),
    }
    log(
        f"  rebuilt {len(seconds)} projections over {events:,} events: "
        + ", ".join(f"{k} {v:,.0f}/s" for k, v in eps.items())
    )
    return result


def run(events: int, log: Callable[[str], None]) -> dict[str, Any]:
    common.drop_schema()
    with connections["default"].cursor() as cur:
        cur.execute(f"CREATE SCHEMA {common.SCHEMA}")
    try:
        with common.scratch(search_path=common.SCHEMA):
            common.migrate_scratch()
            empty = probe(0, 100, log)
            written, seconds = grow(events, log)
            log(f"  grew the log by {written:,} ledger events in {seconds:.0f} s: {written / seconds:,.0f} events/s")
            sizes = disk()
            full = probe(sizes["events"], 200, log)
            rebuilt = rebuilds(sizes["events"], log)
    finally:
        common.drop_schema()
    figures = [k for k in empty if k not in ("log_events", "checkpointed") and not k.endswith("runs")]
    ratios = {k: round(full[k] / empty[k], 3) for k in figures}
    verdicts = {k: ratios[k] >= 0.85 for k in FLAT} | {k: full[k] < 200 for k in BOUNDED_MS}
    verdicts["snapshot_ms"] = full["snapshot_ms"] < snapshot_workload.TARGET_MS
    for k, v in ratios.items():
        log(f"big: {k} {full[k]} at {full['log_events']:,} events, {empty[k]} on the empty log -> {v}x")
    log(f"big: {sizes['bytes_per_event']} bytes per event on disk ({sizes['index_bytes_per_event']})")
    return {
        "machine": common.machine(),
        "when": datetime.now(UTC).isoformat(),
        "events_grown": written,
        "load_eps": round(written / seconds, 1),
        "empty": empty,
        "full": full,
        "ratio_full_over_empty": ratios,
        "meets": verdicts,
        "disk": sizes,
        "rebuild": rebuilt,
        "method": (__doc__ or "").strip(),
    }
