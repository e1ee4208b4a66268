"""P5 of docs/benchmarks.md: a backlog caught up against a rebuild of the same log.

The scratch schema gets every migration, then the backlog: 10,000 accounts of 100 events at
scale 1 (opened, a first deposit, then deposits and withdrawals), appended through
`EventStore.append` (a repository's save) in transactions of 10 accounts while no worker runs.
Each of three runs then
- puts every projection and process manager back at the start of the log with empty read
  models (the state of a fresh stack whose worker was stopped while the backlog came in),
- starts a Celery worker (2 processes, with beat, as `make run` does) beside an ASGI server, sends
  each bucket its wake-up once the worker answers, and times until every projection's and
  process manager's checkpoint stands at its bucket's head (lag 0); meanwhile a client asks
  `GET /api/projections` and the console's Projections page every 0.25 s and times each answer;
- stops the worker and rebuilds every ledger projection one after another on the same log,
  in this process (blue/green, as P1 does): the reference.
Runs alternate which of the two comes first. `eps` is the backlog's events over the catch-up's
seconds, `reference_eps` the same events over the rebuilds' total seconds; `projections_eps`
the backlog's events over the seconds until the last projection (not process manager) reached
lag 0. Afterwards, in this process and without a worker, each part of the catch-up runs alone
over 4 of the 64 buckets (`serial_eps`): the projections folded, the projections one event at a
time (as before the fold), and each process manager.
"""

from __future__ import annotations

import http.client
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import psycopg
from django.conf import settings
from django.db import connections, transaction

from app.ledger.domain.account import Account
from app.stack import stop_processes
from bench import common
from bench.rebuild_workload import _quiet, _rebuild
from eventstore.records import BUCKETS, NO_STREAM
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections import rebuild
from projections.base import projection_registry
from projections.processes import process_registry
from projections.runner import ensure_checkpoints
from projections.wakeups import CATCH_UP_TASK

RUNS = 3
EVENTS_PER_ACCOUNT = 100
ACCOUNTS_PER_TRANSACTION = 10
STATUS_EVERY_S = 0.25
CATCH_UP_TIMEOUT_S = 3600
QUEUE_PREFIX = "bench."
TARGET_RATIO = 0.5
STATUS_TARGET_MS = 200
UVICORN = [sys.executable, "-m", "uvicorn", "app.asgi:application", "--no-access-log", "--log-level", "warning"]
CELERY = [sys.executable, "-m", "celery", "-A", "app", "worker", "-B", "-c", "2", "--loglevel", "WARNING"]


def _seed(accounts: int, seed: int = 5) -> int:
    rng = random.Random(seed)
    repo = Repository(Account, EventStore())
    meta = {"correlation_id": "p5-backlog", "actor": "benchmark"}
    written = 0
    for start in range(0, accounts, ACCOUNTS_PER_TRANSACTION):
        with transaction.atomic():
            for i in range(start, min(accounts, start + ACCOUNTS_PER_TRANSACTION)):
                account = ledger_account(rng, EVENTS_PER_ACCOUNT, owner=f"Owner {i}", largest_deposit=500)
                written += len(account.pending_events)
                repo.save(account, expected_version=NO_STREAM, metadata=meta)
    return written


def _database_url() -> str:
    s = settings.DATABASES["default"]
    auth = quote(s.get("USER") or "postgres") + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    host = quote(s.get("HOST") or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}?{urlencode({'options': f'-c search_path={common.SCHEMA}'})}"


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=_database_url(),
        EVENTFOLD_QUEUE_PREFIX=QUEUE_PREFIX,
        DJANGO_SETTINGS_MODULE="app.settings",
        DEBUG="0",
    )


def _manage(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=_env(),
        cwd=settings.BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _stop(proc: subprocess.Popen) -> None:
    stop_processes([proc], timeout=30)  # and whatever it started (the worker's embedded beat)


@contextmanager
def _web(token: str) -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(
        [*UVICORN, "--port", str(port)],
        env=_env(),
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # /healthz logs an error while the worker is away
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/api/projections", {"Authorization": f"Bearer {token}"})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("P5's web server did not answer within 60 s") from None
                time.sleep(0.2)
        yield port
    finally:
        _stop(proc)


def _worker(port: int) -> subprocess.Popen:
    """A worker with beat, as `make run` starts one; returns once /healthz sees its heartbeat."""
    queues = ",".join(QUEUE_PREFIX + q for q in ("celery", "projections", "rebuilds"))
    proc = subprocess.Popen(
        [*CELERY, "-Q", queues, "-s", f"/tmp/eventfold-bench-p5-beat-{port}"],
        env=_env(),
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while _get(port, "/healthz", {}) != 200:
        if time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError("P5's worker did not answer /healthz within 60 s")
        time.sleep(0.1)
    return proc


def _console_cookie(port: int, username: str, password: str) -> str:
    from bench.app_workloads import _console_session

    return f"sessionid={_console_session({'port': port, 'username': username, 'password': password})}"


def _subscribers() -> list[str]:
    return [p.name for p in projection_registry.all()] + [p.name for p in process_registry.all()]


def _back_to_the_start(db: psycopg.Connection) -> None:
    """Every projection and process manager at position zero, the read models empty, and paused
    until the clock starts (a worker's beat would otherwise start on them while it boots)."""
    tables = [t for p in projection_registry.all() for t in p.tables]
    db.execute(f"TRUNCATE {', '.join(tables)}")
    db.execute("UPDATE projections_checkpoint SET tx_id = 0, position = 0, failed = false")
    db.execute("UPDATE projections_projectionstate SET paused = true")


def _lagging(db: psycopg.Connection, heads: dict[int, tuple[int, int]], names: list[str]) -> set[str]:
    """The subscribers with a bucket whose checkpoint is not yet at the bucket's head."""
    rows = db.execute(
        "SELECT projection, bucket, tx_id, position FROM projections_checkpoint WHERE projection = ANY(%s)", [names]
    ).fetchall()
    done: dict[str, int] = {}
    for name, bucket, tx_id, position in rows:
        if bucket not in heads or (tx_id, position) >= heads[bucket]:
            done[name] = done.get(name, 0) + 1
    return {n for n in names if done.get(n, 0) < BUCKETS}


class StatusProbe:
    """A client asking the status endpoint and the console page in turn until stopped."""

    def __init__(self, port: int, token: str, cookie: str) -> None:
        self.port, self.token, self.cookie = port, token, cookie
        self.api: list[float] = []
        self.console: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _time(self, path: str, headers: dict[str, str], into: list[float]) -> None:
        t0 = time.perf_counter()
        status = _get(self.port, path, headers)
        into.append(time.perf_counter() - t0)
        if status != 200:
            self.errors += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._time("/api/projections", {"Authorization": f"Bearer {self.token}"}, self.api)
            self._time("/projections/", {"Cookie": self.cookie}, self.console)
            self._stop.wait(STATUS_EVERY_S)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def _p99(samples: list[float]) -> float:
    samples = sorted(samples)
    return round(1000 * samples[max(0, int(len(samples) * 0.99) - 1)], 1) if samples else 0.0


def _catch_up(port: int, token: str, cookie: str, heads: dict[int, tuple[int, int]]) -> dict[str, Any]:
    from app.celery import app as celery_app

    names = _subscribers()
    with psycopg.connect(common.conninfo(common.SCHEMA), autocommit=True) as db:
        _back_to_the_start(db)
        worker = _worker(port)
        try:
            began = time.perf_counter()
            db.execute("UPDATE projections_projectionstate SET paused = false")
            for bucket in range(BUCKETS):  # the wake-ups the appends would have queued
                celery_app.send_task(CATCH_UP_TASK, args=(bucket,), queue=QUEUE_PREFIX + "projections")
            probe = StatusProbe(port, token, cookie)
            finished: dict[str, float] = {}
            try:
                while lagging := _lagging(db, heads, names):
                    now = time.perf_counter() - began
                    finished.update({n: now for n in names if n not in lagging and n not in finished})
                    if now > CATCH_UP_TIMEOUT_S:
                        raise RuntimeError("P5's catch-up did not reach lag 0 in time")
                    time.sleep(0.1)
                seconds = time.perf_counter() - began
                finished.update({n: seconds for n in names if n not in finished})
            finally:
                probe.stop()
        finally:
            _stop(worker)
    return {
        "seconds": seconds,
        "finished_s": {n: round(finished[n], 2) for n in names},
        "status_p50_ms": round(1000 * statistics.median(probe.api), 1) if probe.api else 0.0,
        "status_p99_ms": _p99(probe.api),
        "status_max_ms": round(1000 * max(probe.api, default=0.0), 1),
        "console_p99_ms": _p99(probe.console),
        "status_samples": len(probe.api),
        "status_errors": probe.errors,
    }


SERIAL_BUCKETS = 4  # of 64: the in-process split below reads about 1/16 of the log


def _serial() -> dict[str, float]:
    """Events/s of each part of the catch-up alone, in this process, over the first
    SERIAL_BUCKETS buckets: the projections folded (as the runner does now) and one event at a
    time (as it did before), and each process manager. Where the catch-up's time goes."""
    from projections import processes, runner

    with connections["default"].cursor() as cur:
        cur.execute("SELECT count(*) FROM eventstore_event WHERE bucket < %s", [SERIAL_BUCKETS])
        events = cur.fetchone()[0]
    out: dict[str, float] = {}
    for label, bulk_min in (("projections_folded", runner.BULK_MIN_EVENTS), ("projections_one_by_one", 10**9)):
        with psycopg.connect(common.conninfo(common.SCHEMA), autocommit=True) as db:
            _back_to_the_start(db)
            db.execute("UPDATE projections_projectionstate SET paused = false")
        saved, runner.BULK_MIN_EVENTS = runner.BULK_MIN_EVENTS, bulk_min
        try:
            began = time.perf_counter()
            for bucket in range(SERIAL_BUCKETS):
                while "more" in runner.catch_up(bucket).values():
                    pass
            out[label] = round(events / (time.perf_counter() - began), 1)
        finally:
            runner.BULK_MIN_EVENTS = saved
    for process in process_registry.all():
        began = time.perf_counter()
        for bucket in range(SERIAL_BUCKETS):
            while processes.run(process.name, bucket) == "more":
                pass
        out[process.name] = round(events / (time.perf_counter() - began), 1)
    return out


def rebuild_every_projection(events: int) -> dict[str, float]:
    """Seconds to rebuild each ledger projection from zero over the log of `events` events
    (blue/green, in this process), one after another."""
    seconds = {}
    with _quiet_rebuilds():
        for projection in projection_registry.all():
            eps, _ = _rebuild(projection.name, events)
            seconds[projection.name] = events / eps
    return seconds


@contextmanager
def _quiet_rebuilds() -> Iterator[None]:
    import logging

    with _quiet(logging.getLogger(rebuild.__name__)):
        yield


def p5(scale: float, log: Callable[[str], None]) -> dict[str, Any]:
    accounts = max(100, int(10_000 * scale))
    common.drop_schema()
    with connections["default"].cursor() as cur:
        cur.execute(f"CREATE SCHEMA {common.SCHEMA}")
    with common.scratch(search_path=common.SCHEMA):
        common.migrate_scratch()
        began = time.perf_counter()
        events = _seed(accounts)
        for subscriber in [*projection_registry.all(), *process_registry.all()]:
            ensure_checkpoints(subscriber, force=True)  # their rows, so that they can start paused
        took = time.perf_counter() - began
        log(f"  P5 appended a backlog of {events:,} events ({accounts:,} accounts) in {took:.0f} s")
        with connections["default"].cursor() as cur:
            cur.execute("VACUUM ANALYZE eventstore_event")
        with connections["default"].cursor() as cur:
            cur.execute(
                "SELECT DISTINCT ON (bucket) bucket, tx_id::text::int8, global_position FROM eventstore_event "
                "ORDER BY bucket, tx_id DESC, global_position DESC"
            )
            heads = {b: (tx, pos) for b, tx, pos in cur.fetchall()}
        password = secrets.token_urlsafe(16)
        token = _manage("create_token", "bench-p5", "--role", "viewer", f"--password={password}")
        runs: list[dict[str, Any]] = []
        with _web(token) as port:
            cookie = _console_cookie(port, "bench-p5", password)
            for i in range(RUNS):
                order = ["catch_up", "reference"] if i % 2 == 0 else ["reference", "catch_up"]
                run: dict[str, Any] = {}
                for what in order:
                    if what == "catch_up":
                        run.update(_catch_up(port, token, cookie, heads))
                    else:
                        run["reference_seconds"] = sum(rebuild_every_projection(events).values())
                run["eps"] = events / run["seconds"]
                run["reference_eps"] = events / run["reference_seconds"]
                run["ratio"] = run["eps"] / run["reference_eps"]
                projected = max(run["finished_s"][p.name] for p in projection_registry.all())
                run["projections_eps"] = events / projected  # the projections alone, at lag 0
                runs.append(run)
                log(
                    f"  P5 run {i + 1}: caught up {run['eps']:,.0f} events/s, rebuilds {run['reference_eps']:,.0f} "
                    f"events/s -> {run['ratio']:.2f}x; GET /api/projections p99 {run['status_p99_ms']} ms, "
                    f"console p99 {run['console_p99_ms']} ms; at lag 0 after (s): {run['finished_s']}"
                )
        serial = _serial()
        log(f"  P5 in one process, events/s over {SERIAL_BUCKETS} of {BUCKETS} buckets: {serial}")
    common.drop_schema()
    middle = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
    result = {
        "eps": round(middle["eps"], 1),
        "runs": [round(r["eps"], 1) for r in runs],
        "reference_eps": round(middle["reference_eps"], 1),
        "reference_runs": [round(r["reference_eps"], 1) for r in runs],
        "ratio": round(middle["ratio"], 3),
        "run_ratios": [round(r["ratio"], 3) for r in runs],
        "target_ratio": TARGET_RATIO,
        "events": events,
        "status_p50_ms": middle["status_p50_ms"],
        "status_p99_ms": max(r["status_p99_ms"] for r in runs),
        "status_max_ms": max(r["status_max_ms"] for r in runs),
        "console_p99_ms": max(r["console_p99_ms"] for r in runs),
        "status_samples": sum(r["status_samples"] for r in runs),
        "status_errors": sum(r["status_errors"] for r in runs),
        "status_target_ms": STATUS_TARGET_MS,
        "finished_s": middle["finished_s"],
        "projections_eps": round(middle["projections_eps"], 1),
        "projections_ratio": round(middle["projections_eps"] / middle["reference_eps"], 3),
        "serial_eps": serial,
        "method": (__doc__ or "").strip(),
    }
    verdict = "meets" if result["ratio"] >= TARGET_RATIO else "MISSES"
    log(
        f"P5: caught up {result['eps']:,.0f} events/s, rebuilding every projection {result['reference_eps']:,.0f} "
        f"events/s in the same run -> {result['ratio']:.2f}x ({verdict} >= {TARGET_RATIO}x); the projections "
        f"alone {result['projections_eps']:,.0f} events/s ({result['projections_ratio']:.2f}x); status p99 "
        f"{result['status_p99_ms']} ms, console p99 {result['console_p99_ms']} ms (of {result['status_samples']})"
    )
    return result


def ledger_account(rng: random.Random, events: int, *, owner: str, largest_deposit: int) -> Account:
    """A new account with `events` pending events of the ledger's shape: opened, a salary, then
    deposits (60 %) and withdrawals of up to 500."""
    account = Account.open(UUID(int=rng.getrandbits(128), version=4), owner=owner, currency="EUR")
    account.deposit(rng.randint(50_000, 100_000), reference="salary")
    for _ in range(events - 2):
        if rng.random() < 0.6:
            account.deposit(rng.randint(1, largest_deposit), reference="deposit")
        else:
            account.withdraw(rng.randint(1, 500), reference="withdrawal")
    return account
