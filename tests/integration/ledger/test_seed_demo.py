"""The first start of `make run`: seed_demo's demo data (accounts, transfers the worker completes, one
refunded, one failed), --if-empty, --live traffic; and the admin login it prints."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from app.ledger.models import AccountSummary, Entry, TransferSummary
from eventstore.store import EventStore
from eventstore.timeline import totals
from projections import runner
from tests.conftest import wait_for
from tests.integration.projections.conftest import worker  # noqa: F401


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _seeded(category: str, after: int) -> list:
    """The streams of a category that the seed started (the worker replays every earlier test's
    log into the read models too, so counts must look at these alone)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT stream_id FROM eventstore_event WHERE category = %s AND global_position > %s "
            "AND version = 1",
            [category, after],
        )
        return [r[0] for r in cur.fetchall()]


@pytest.mark.usefixtures("worker")
def test_seeded_transfers_complete_fail_and_refund_on_the_worker():
    before, start = totals().events, EventStore().head().position
    output = seed("--accounts", "8", "--operations", "120")
    assert "demo data: 8 accounts, 120 commands" in output
    accounts, transfers = _seeded("account", start), _seeded("transfer", start)
    assert len(accounts) >= 8 and transfers
    mine = TransferSummary.objects.filter(transfer_id__in=transfers)

    def settled() -> bool:
        return not runner.lagging_buckets() and mine.count() == len(transfers) and not mine.filter(status="pending")

    wait_for(settled, timeout=60, what="the worker to settle every seeded transfer")
    statuses = dict(mine.values_list("status").annotate(n=Count("*")))
    assert statuses.get("completed", 0) >= 1
    reasons = set(mine.filter(status="failed").values_list("reason", flat=True))
    assert {"account_closed", "insufficient_funds"} <= reasons
    refunds = Entry.objects.filter(kind="refund", account_id__in=accounts)
    assert refunds.count() == 1  # the transfer to the closed account
    seeded = AccountSummary.objects.filter(account_id__in=accounts)
    assert seeded.filter(status="frozen").count() == 1
    assert seeded.filter(status="closed").count() == 1
    assert totals().events - before > 8 * 2 + 100  # opening, first deposits, commands, transfer steps


def test_if_empty_adds_nothing_to_a_ledger_with_accounts(transactional_db):
    seed("--accounts", "3", "--operations", "5")
    before = totals().events
    assert "no demo data added" in seed("--if-empty")
    assert totals().events == before


def test_live_traffic_runs_at_about_the_rate_asked(transactional_db):
    started = time.monotonic()
    output = seed("--live", "--rate", "40", "--max-commands", "40")
    elapsed = time.monotonic() - started
    assert "stopped after 40 commands" in output
    assert 0.9 <= elapsed < 6  # 40 commands at 40/s (plus opening a few accounts)


def test_the_first_start_makes_an_admin_login_and_prints_its_password_once(client, transactional_db):
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().strip()
    assert len(password) >= 12
    assert client.login(username="admin", password=password)
    assert client.get("/users/").status_code == 200  # an admin's page
    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert again.getvalue() == ""  # never printed (nor changed) again
    assert client.login(username="admin", password=password)
