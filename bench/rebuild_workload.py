"""P1 of docs/benchmarks.md: rebuild each ledger projection from zero over a seeded ledger log.

The scratch schema gets every migration (the event store, the projections' bookkeeping and the
ledger's read models), then about 200,000 ledger events made by the domain itself: 20,000
accounts opened with deposits and withdrawals, and transfers that debit, credit and settle.
The same log is copied into the raw reference table, so the reference is W4's raw read of
exactly this log. Each run reads it raw once and rebuilds every projection (blue/green, as in
production: scratch tables, plain indexes at the end, the swap), alternating the order.

A projection's figure is the log's events over the rebuild's wall time, from the request to
the swap: how fast a rebuild gets through a log of this size.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.db import connections, transaction

from app.ledger.domain.account import Account
from app.ledger.domain.transfer import Transfer
from bench import common
from bench.reader_process import timed_read
from eventstore.records import NO_STREAM
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections import rebuild
from projections.base import projection_registry

RUNS = 3
APPENDS_PER_TRANSACTION = 100


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Only warnings from `logger` while the block runs: a rebuild's info lines are not the report."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _seed(accounts: int, transfers: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    ids = [UUID(int=rng.getrandbits(128), version=4) for _ in range(accounts)]
    book = {}
    for i, account_id in enumerate(ids):
        account = Account.open(account_id, owner=f"Owner {i}", currency="EUR")
        account.deposit(rng.randint(50_000, 100_000), reference="salary")
        for _ in range(6):
            if rng.random() < 0.6:
                account.deposit(rng.randint(1, 5_000), reference="deposit")
            else:
                account.withdraw(rng.randint(1, 5_000), reference="withdrawal")
        book[account_id] = account
    moves = []
    for _ in range(transfers):
        source, target = rng.sample(ids, 2)
        transfer_id = UUID(int=rng.getrandbits(128), version=4)
        amount = rng.randint(1, 1_000)
        transfer = Transfer.request(
            transfer_id, source=(source, book[source].state), target=(target, book[target].state), amount=amount
        )
        book[source].debit_for_transfer(transfer_id, amount)
        transfer.confirm_debit()
        book[target].credit_from_transfer(transfer_id, amount)
        transfer.confirm_credit()
        transfer.complete()
        book[source].settle_transfer(transfer_id)
        moves.append(transfer)
    aggregates: list[Account | Transfer] = [*book.values(), *moves]
    rng.shuffle(aggregates)
    accounts_repo, transfers_repo = Repository(Account, EventStore()), Repository(Transfer, EventStore())
    written = 0
    meta = {"correlation_id": "p1-seed", "actor": "benchmark"}
    for start in range(0, len(aggregates), APPENDS_PER_TRANSACTION):
        with transaction.atomic():
            for aggregate in aggregates[start : start + APPENDS_PER_TRANSACTION]:
                written += len(aggregate.pending_events)
                if isinstance(aggregate, Account):
                    accounts_repo.save(aggregate, expected_version=NO_STREAM, metadata=meta)
                else:
                    transfers_repo.save(aggregate, expected_version=NO_STREAM, metadata=meta)
    return written


def _copy_to_raw() -> None:
    with connections["default"].cursor() as cur:
        cur.execute(common.RAW_TABLE)
        cur.execute(
            "INSERT INTO events (stream_id, version, type, data, metadata, created_at) "
            "SELECT stream_id::text, version, event_type, data, metadata, recorded_at FROM eventstore_event "
            "ORDER BY tx_id, global_position"
        )
        cur.execute("ANALYZE")


def _raw_read(events: int) -> float:
    return events / timed_read("raw", events, "P1")


def _rebuild(name: str, events: int) -> tuple[float, int]:
    start = time.perf_counter()
    job = rebuild.start(name, reason="benchmark", run_in_worker=False)
    while (outcome := rebuild.run_slice(job.pk, seconds=3600)) == "more":
        pass
    elapsed = time.perf_counter() - start
    job.refresh_from_db()
    if outcome != "done":
        raise RuntimeError(f"P1 rebuild of {name} ended {outcome}: {job.error}")
    return events / elapsed, job.done


def p1(scale: float, log: Callable[[str], None]) -> dict[str, Any]:
    accounts = max(200, int(20_000 * scale))
    transfers = max(50, int(5_700 * scale))
    common.drop_schema()
    with connections["default"].cursor() as cur:
        cur.execute(f"CREATE SCHEMA {common.SCHEMA}")
    # Django sees the scratch schema alone, so `migrate` fills it from nothing.
    with common.scratch(search_path=common.SCHEMA), _quiet(logging.getLogger(rebuild.__name__)):
        common.migrate_scratch()
        began = time.perf_counter()
        events = _seed(accounts, transfers)
        _copy_to_raw()
        log(f"  P1 seeded {events:,} ledger events ({accounts:,} accounts) in {time.perf_counter() - began:.0f} s")
        return _measure(events, log)


def _measure(events: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Every projection rebuilt once (checkpoints and states, as a running system has them), then
    RUNS rounds of the raw read and every rebuild, in alternating order."""
    names = [p.name for p in projection_registry.all()]
    for name in names:
        _rebuild(name, events)
    raw_runs: list[float] = []
    runs: dict[str, list[float]] = {n: [] for n in names}
    handled: dict[str, int] = {}
    for i in range(RUNS):
        order = ["raw", *names] if i % 2 == 0 else [*reversed(names), "raw"]
        for system in order:
            if system == "raw":
                raw_runs.append(_raw_read(events))
                log(f"  P1 run {i + 1} raw read       {raw_runs[-1]:10,.0f} events/s")
            else:
                eps, handled[system] = _rebuild(system, events)
                runs[system].append(eps)
                log(f"  P1 run {i + 1} {system:16s} {eps:10,.0f} events/s")
    reference = statistics.median(raw_runs)
    per: dict[str, dict[str, Any]] = {
        n: {
            "eps": round(statistics.median(r), 1),
            "runs": [round(x, 1) for x in r],
            "ratio": round(statistics.median(r) / reference, 3),
            "events_applied": handled[n],
        }
        for n, r in runs.items()
    }
    slowest = min(per, key=lambda n: per[n]["eps"])
    result = {
        "eps": per[slowest]["eps"],
        "slowest": slowest,
        "reference_eps": round(reference, 1),
        "reference_runs": [round(x, 1) for x in raw_runs],
        "ratio": per[slowest]["ratio"],
        "events": events,
        "projections": per,
        "target_eps": 25_000,
        "target_ratio": 0.3,
        "method": (__doc__ or "").strip(),
    }
    for n, r in per.items():
        log(f"P1 {n}: {r['eps']:,.0f} events/s, {r['ratio']:.2f}x the raw read of {reference:,.0f} events/s")
    return result
