"""Archiving a closed, tombstoned account on the real worker: its events leave the hot table, the
read models keep its rows, and a rebuild (which reads the archive too) gives the same read models;
`verify_projections` finds no difference."""

from io import StringIO
from uuid import uuid4

import pytest
from django.core.management import call_command

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.models import AccountSummary, Entry
from eventstore import roles
from eventstore.browse import LogBrowser
from eventstore.store import EventStore
from projections import rebuild, runner
from projections.verify import verify
from tests.conftest import wait_for
from tests.integration.projections.conftest import replay_whole_log

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", roles.OWNER_ALIAS])
LEDGER = ["account_entries", "account_summary", "daily_totals", "transfers"]


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def caught_up() -> bool:
    return not runner.lagging_buckets()


def read_models(accounts) -> tuple[list, list]:
    summary = sorted(
        AccountSummary.objects.filter(account_id__in=accounts).values_list("account_id", "balance", "status", "version")
    )
    entries = sorted(
        Entry.objects.filter(account_id__in=accounts).values_list(
            "account_id", "version", "kind", "amount", "balance_after"
        )
    )
    return summary, entries


def archive() -> str:
    out = StringIO()
    call_command("archive_streams", stdout=out)
    return out.getvalue()


def test_an_archived_account_keeps_its_read_models_through_a_rebuild(worker):
    replay_whole_log()  # verify replays the whole log: the live read models must hold it too
    closed, kept = (
        handlers.account_open(account_id=uuid4(), owner="Archived", currency="EUR", ctx=ctx()).stream_id
        for _ in range(2)
    )
    for account in (closed, kept):
        handlers.account_deposit(account_id=account, amount=30, ctx=ctx())
    handlers.account_withdraw(account_id=closed, amount=30, ctx=ctx())
    handlers.account_close(account_id=closed, reason="done", ctx=ctx())
    store = EventStore()
    store.tombstone(closed, reason="closed account")
    wait_for(caught_up, timeout=60, what="catch-up")
    before = read_models([closed, kept])
    history = store.read_stream(closed)

    assert "archived" in archive()
    assert LogBrowser().archived(closed) and not LogBrowser().archived(kept)
    hot = [e for e in store.read_all(limit=100_000).events if e.stream_id == closed]
    assert hot == []
    assert store.read_stream(closed) == history  # read by stream as before
    assert read_models([closed, kept]) == before

    for name in LEDGER:
        job = rebuild.start(name, reason="test", run_in_worker=False)
        while (outcome := rebuild.run_slice(job.pk)) == "more":
            pass
        assert outcome == "done", name
    assert read_models([closed, kept]) == before
    for name in LEDGER:
        assert verify(name).clean, name


def test_a_stream_not_yet_passed_by_every_projection_waits(worker):
    account = handlers.account_open(account_id=uuid4(), owner="Waiting", currency="EUR", ctx=ctx()).stream_id
    wait_for(caught_up, timeout=60, what="catch-up")
    EventStore().tombstone(account)
    from projections.models import BucketCheckpoint

    BucketCheckpoint.objects.filter(projection="account_summary").update(tx_id=0, position=0)  # as if far behind
    assert "wait for the projections" in archive()
    assert not LogBrowser().archived(account)
