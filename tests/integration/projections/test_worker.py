"""Projections driven by a real Celery worker process, on-commit wake-ups and beat."""

import random
import threading
from uuid import uuid4

from django.db import connections

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.account import Account
from app.ledger.domain.errors import LedgerError
from app.ledger.models import AccountSummary, Entry
from eventstore.errors import ConcurrencyError
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections.models import BucketCheckpoint
from tests.conftest import wait_for


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def _settled(accounts: list) -> bool:
    """Every account's read model is at its stream's version."""
    store = EventStore()
    rows = {a.account_id: a for a in AccountSummary.objects.filter(account_id__in=accounts)}
    return len(rows) == len(accounts) and all(rows[a].version == store.stream_version(a) for a in accounts)


def test_an_append_reaches_the_read_model_through_the_worker(worker):
    account = handlers.account_open(account_id=uuid4(), owner="Wendy Worker", currency="EUR", ctx=ctx()).stream_id
    handlers.account_deposit(account_id=account, amount=42, ctx=ctx())
    row = wait_for(lambda: AccountSummary.objects.filter(account_id=account, version=2).first(), what="catch-up")
    assert int(row.balance) == 42 and row.owner == "Wendy Worker"


def test_read_models_equal_a_fresh_fold_after_a_concurrent_workload(worker):
    accounts = [
        handlers.account_open(account_id=uuid4(), owner=f"Load {i}", currency="EUR", ctx=ctx()).stream_id
        for i in range(6)
    ]
    deposited = [0] * 4
    withdrawn = [0] * 4

    def client(n: int) -> None:
        rng = random.Random(n)
        try:
            for _ in range(40):
                account = rng.choice(accounts)
                amount = rng.randrange(1, 500)
                try:
                    if rng.random() < 0.6:
                        handlers.account_deposit(account_id=account, amount=amount, ctx=ctx())
                        deposited[n] += amount
                    else:
                        handlers.account_withdraw(account_id=account, amount=amount, ctx=ctx())
                        withdrawn[n] += amount
                except (LedgerError, ConcurrencyError):  # refused: no money moved
                    pass
        finally:
            connections.close_all()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: _settled(accounts), timeout=30, what="all accounts applied")
    repo = Repository(Account, EventStore())
    total = 0
    for account in accounts:
        folded = repo.load(account)
        row = AccountSummary.objects.get(account_id=account)
        assert (int(row.balance), row.status, row.version) == (
            folded.state.balance,
            folded.state.status,
            folded.version,
        )
        entries = list(Entry.objects.filter(account_id=account).order_by("version"))
        assert sum(e.amount for e in entries) == folded.state.balance
        assert entries[-1].balance_after == folded.state.balance if entries else folded.state.balance == 0
        total += folded.state.balance
    assert total == sum(deposited) - sum(withdrawn), "money is conserved"
    parked = BucketCheckpoint.objects.filter(failed=True, projection__in=["account_summary", "account_entries"])
    assert not parked.exists()
