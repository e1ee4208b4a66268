"""Duplicated deliveries, a held horizon, two workers sharing the buckets."""

import os
import subprocess
import sys
import threading
import time
from uuid import uuid4

import psycopg
from django.conf import settings
from django.db import connections

from app.celery import app as celery_app
from app.ledger import handlers
from app.ledger.domain.account import Account
from app.ledger.handlers import CommandContext
from app.ledger.models import AccountSummary, Entry
from eventstore.aggregate import Repository
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections import runner
from projections.tasks import catch_up_bucket
from tests.conftest import wait_for, worker_database_url


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
    threads = [  # ...and twice at once in this process
        threading.Thread(target=lambda b=b: results.append(runner.catch_up("account_summary", b)))
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


def _worker(name: str) -> subprocess.Popen:
    env = dict(os.environ, DATABASE_URL=worker_database_url(), EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX)
    env.pop("TEST_DATABASE_NAME", None)
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app",
        "worker",
        "-Q",
        ",".join(settings.QUEUES.values()),
        "-c",
        "2",
        "--loglevel",
        "WARNING",
        "-n",
        f"{name}@%h",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(
        lambda: celery_app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5),
        timeout=60,
        what=f"worker {name}",
    )
    return proc


def test_two_workers_share_the_buckets(worker):
    second = _worker(f"second-{os.getpid()}")
    try:
        accounts = _open(12)
        for account in accounts:
            for amount in (5, 7, 11):
                handlers.account_withdraw(account_id=account, amount=amount, ctx=ctx())
        wait_for(lambda: _equals_fold(accounts), timeout=30, what="both workers' result to equal a fresh fold")
    finally:
        second.terminate()
        second.wait(timeout=30)
