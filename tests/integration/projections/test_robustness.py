"""Duplicated deliveries, a held horizon, two workers sharing the buckets."""

import os
import signal
import threading
import time
from uuid import uuid4

import psycopg
from django.conf import settings
from django.db import connection, connections

from app.celery import app as celery_app
from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.account import Account
from app.ledger.models import AccountSummary, Entry
from eventstore.records import bucket_of
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections import catchup, status
from projections.tasks import catch_up_bucket
from tests.conftest import start_worker, wait_for, worker_database_url


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def _open(n: int, amount: int = 100) -> list:
    ids = []
    for i in range(n):
        account = handlers.account_open(account_id=uuid4(), owner=f"Robust {i}", currency="EUR", ctx=ctx()).stream_id
        handlers.account_deposit(account_id=account, amount=amount, ctx=ctx())
        ids.append(account)
    return ids


def _equals_fold(accounts: list) -> bool:
    repo = Repository(Account, EventStore())
    for account in accounts:
        folded = repo.load(account)
        row = AccountSummary.objects.filter(account_id=account).first()
        if row is None or (int(row.balance), row.version) != (folded.state.balance, folded.version):
            return False
        entries = list(Entry.objects.filter(account_id=account).order_by("version"))
        if sum(e.amount for e in entries) != folded.state.balance:
            return False
        if [e.position for e in entries] != sorted(e.position for e in entries):
            return False  # a stream's events applied out of order
    return True


def test_the_same_catch_up_delivered_twice_changes_nothing(worker):
    accounts = _open(3)
    buckets = sorted({bucket_of(a) for a in accounts})
    for bucket in buckets:  # twice through the broker...
        catch_up_bucket.apply_async((bucket,))
        catch_up_bucket.apply_async((bucket,))
    results = []
    threads = [  # ...and twice at once in this process, as the task runs it
        threading.Thread(target=lambda b=b: results.extend(catchup.catch_up_bucket(b).values()))
        for b in buckets
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    connections.close_all()
    assert set(results) <= {"drained", "busy", "more"}
    wait_for(lambda: _equals_fold(accounts), what="the read model to equal a fresh fold")


def test_an_open_write_transaction_delays_then_everything_arrives(worker):
    with psycopg.connect(worker_database_url()) as other:
        other.execute("CREATE TEMP TABLE holder (x int)")
        other.execute("INSERT INTO holder VALUES (1)")  # this transaction now holds the horizon
        accounts = _open(2)
        time.sleep(1.0)
        assert not AccountSummary.objects.filter(account_id__in=accounts).exists(), "nothing passes the horizon"
        other.rollback()
    wait_for(lambda: _equals_fold(accounts), what="the events held back to arrive")


def test_two_workers_share_the_buckets(worker):
    second = start_worker(f"second-{os.getpid()}")
    try:
        accounts = _open(12)
        for account in accounts:
            for amount in (5, 7, 11):
                handlers.account_withdraw(account_id=account, amount=amount, ctx=ctx())
        wait_for(lambda: _equals_fold(accounts), timeout=30, what="both workers' result to equal a fresh fold")
    finally:
        second.terminate()
        second.wait(timeout=30)


# SHARE mode blocks the runner's INSERT but, unlike ACCESS EXCLUSIVE, gives the locking
# transaction no transaction id: it does not hold the read horizon back.
BLOCK_ENTRIES = "LOCK TABLE ledger_entry IN SHARE MODE"


def _lock_waiters(application: str | None = None) -> list[int]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid() AND (%s::text IS NULL OR application_name = %s)",
            [application, application],
        )
        return [r[0] for r in cur.fetchall()]


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(worker):
    """The runner blocks mid-batch on a locked read-model table; its worker is SIGKILLed there;
    the transaction dies with it; the next worker resumes from the checkpoint."""
    session_worker = f"test-{os.getpid()}@{os.uname().nodename}"
    for queue in settings.QUEUES.values():
        celery_app.control.cancel_consumer(queue, destination=[session_worker], reply=True)
    doomed_name = f"doomed-{os.getpid()}"
    doomed = start_worker(doomed_name)
    try:
        with psycopg.connect(worker_database_url()) as blocker:
            blocker.execute(BLOCK_ENTRIES)
            accounts = _open(4)
            wait_for(lambda: _lock_waiters(doomed_name), what="the doomed worker to block mid-batch")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            for child in _orphans(doomed.pid):
                os.kill(child, signal.SIGKILL)  # its pool processes die with it, as on a lost machine
            blocker.rollback()
        assert not Entry.objects.filter(account_id__in=accounts).exists()
    finally:
        if doomed.poll() is None:
            doomed.kill()
        for queue in settings.QUEUES.values():
            celery_app.control.add_consumer(queue, destination=[session_worker], reply=True)
    wait_for(lambda: _equals_fold(accounts), timeout=30, what="the surviving worker to resume")


def _orphans(parent_pid: int) -> list[int]:
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["ppid", "cmdline"])
        if p.info["ppid"] in (parent_pid, 1) and f"doomed-{os.getpid()}" in " ".join(p.info["cmdline"] or [])
    ]


def test_a_terminated_database_connection_mid_batch_loses_and_doubles_nothing(worker):
    with (
        psycopg.connect(worker_database_url(), autocommit=True) as admin,
        psycopg.connect(worker_database_url()) as blocker,
    ):
        blocker.execute(BLOCK_ENTRIES)
        accounts = _open(4)
        pids = wait_for(_lock_waiters, what="a runner to block mid-batch")
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        blocker.rollback()
    wait_for(lambda: _equals_fold(accounts), timeout=30, what="the runner to recover")


def test_the_worker_keeps_its_database_connection_between_tasks():
    """Celery's Django fix-up closes every connection around every task unless CELERY_DB_REUSE_MAX
    is set: a catch-up then paid for a new PostgreSQL backend each time (docs/benchmarks.md, P2)."""
    assert settings.CELERY_DB_REUSE_MAX >= 100
    assert celery_app.conf.get("CELERY_DB_REUSE_MAX") == settings.CELERY_DB_REUSE_MAX


def test_a_catch_up_whose_kept_connection_was_dropped_runs_again_on_a_new_one(quiet_worker):
    status.start_at_head()  # the catch-up meets this test's events only, not what earlier tests left
    accounts = _open(2)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        [(dropped,)] = cur.fetchall()
    with psycopg.connect(worker_database_url(), autocommit=True) as admin:  # as a restart of the server would
        admin.execute("SELECT pg_terminate_backend(%s)", [dropped])
    for bucket in {bucket_of(a) for a in accounts}:
        outcomes = catch_up_bucket(bucket)  # the task's body, in this process, on the dropped connection
        assert outcomes and "failed" not in outcomes.values(), outcomes
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != dropped
    assert _equals_fold(accounts)
