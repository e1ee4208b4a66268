"""A rebuild after `manage.py enforce_retention`: what docs/design.md ("Retention") says holds.

The read models of categories without a rule (every aggregate's: `account`, `transfer`) come out
of the rebuild as they were. A read model over an expiring category is a window: the live one
keeps what it folded before the events expired, and a rebuild folds only what is left. Here the
ledger's event types are appended to a stream of an expiring category, so that the ledger's own
projections fold them (nothing in the store ties event types to categories); the worker folds
them while no rule is in force, then the rule comes in (in this process, which enforces it and
rebuilds)."""

from io import StringIO
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.db import connections

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.events import AccountOpened, FundsDeposited
from app.ledger.models import AccountSummary, DailyAccountTotal, Entry
from eventstore import roles
from eventstore.store import EventStore
from projections import rebuild, runner
from projections.verify import verify
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", roles.OWNER_ALIAS])
LEDGER = ["account_entries", "account_summary", "daily_totals", "transfers"]


def caught_up() -> bool:
    return not runner.lagging_buckets()


def read_models(accounts) -> tuple[list, list, list]:
    summary = sorted(
        AccountSummary.objects.filter(account_id__in=accounts).values_list("account_id", "balance", "status", "version")
    )
    entries = sorted(
        Entry.objects.filter(account_id__in=accounts).values_list("account_id", "version", "amount", "balance_after")
    )
    daily = sorted(
        DailyAccountTotal.objects.filter(account_id__in=accounts).values_list("account_id", "deposits", "last_version")
    )
    return summary, entries, daily


def stored_versions(stream_id) -> list[int]:
    with connections["default"].cursor() as cur:
        cur.execute("SELECT version FROM eventstore_event WHERE stream_id = %s ORDER BY version", [stream_id])
        return [row[0] for row in cur.fetchall()]


def test_a_rebuild_after_retention_folds_what_is_left(worker, settings):
    category = f"expiring-{uuid4().hex[:8]}"  # no other test's events in it
    ctx = CommandContext(actor="test")
    account = handlers.account_open(account_id=uuid4(), owner="Kept Always", currency="EUR", ctx=ctx).stream_id
    handlers.account_deposit(account_id=account, amount=5, ctx=ctx)
    window = uuid4()
    EventStore().append(
        window,
        category,
        [AccountOpened(owner="Wendy Window", currency="EUR"), *(FundsDeposited(amount=a) for a in (10, 20, 40, 80))],
    )
    wait_for(caught_up, timeout=60, what="catch-up")
    summary, entries, daily = read_models([window])
    assert summary == [(window, 150, "open", 5)]  # folded while no rule was in force
    assert [(v, amount, after) for _, v, amount, after in entries] == [
        (2, 10, 10),
        (3, 20, 30),
        (4, 40, 70),
        (5, 80, 150),
    ]
    kept_before = read_models([account])

    settings.EVENTFOLD_RETENTION = {category: {"max_count": 2}}
    assert f"{category}: 3 expired events deleted" in enforce()
    assert stored_versions(window) == [4, 5]
    assert read_models([window]) == (summary, entries, daily)  # the live read models keep what they folded

    for name in LEDGER:
        job = rebuild.start(name, reason="test", run_in_worker=False)
        while (outcome := rebuild.run_slice(job.pk)) == "more":
            pass
        assert outcome == "done", name
    assert read_models([account]) == kept_before  # no rule on `account`: as it was
    # Only versions 4 and 5 are left: no AccountOpened, so no account row and no daily totals
    # (which need the account's currency), and entries whose running balance starts at zero.
    assert read_models([window]) == ([], [(window, 4, 40, 40), (window, 5, 80, 120)], [])
    for name in LEDGER:
        assert verify(name).clean, name  # a replay of what is left gives the rebuilt read models


def enforce() -> str:
    out = StringIO()
    call_command("enforce_retention", stdout=out)
    return out.getvalue()
