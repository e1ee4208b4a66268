"""A command's wake-up goes out in one Redis round trip (projections/wakeups.py), and a real worker
takes it: here the only worker has no beat, so no safety-net tick can stand in for the message."""

from __future__ import annotations

import os
from uuid import uuid4

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.models import AccountSummary
from app.stack import stop_processes
from projections import status, wakeups
from tests.conftest import start_worker, wait_for


def test_a_deposit_s_wake_up_reaches_a_worker_without_beat(quiet_worker):
    status.start_at_head()
    alone = start_worker(f"no-beat-{os.getpid()}")  # the session's worker (with beat) takes nothing now
    try:
        account = handlers.account_open(
            account_id=uuid4(), owner="Fay Fast", currency="EUR", ctx=CommandContext(actor="t")
        ).stream_id
        handlers.account_deposit(account_id=account, amount=9, ctx=CommandContext(actor="t"))
        assert wakeups._fast not in (None, wakeups._UNMADE), "the wake-up went through Celery"
        wait_for(
            lambda: AccountSummary.objects.filter(account_id=account, balance=9).exists(),
            what="the worker to apply the deposit its wake-up announced",
        )
    finally:
        stop_processes([alone], timeout=30)
