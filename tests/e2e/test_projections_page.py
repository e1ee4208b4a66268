"""The projections page in a real browser: a rebuild started by an operator, its progress bar
live until the new generation serves, while writes go on.

A rebuild of a few thousand events takes well under a second here, too quick to watch. Its last
step, the swap, waits for every live batch of the projection (their bucket locks): the test holds
one bucket's lock to keep the rebuild at that step, catching up with the writes, while it watches
the page; then lets go."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import psycopg
from django.db import connections
from playwright.sync_api import expect

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.account import Account
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections import runner
from projections.models import ProjectionState, Rebuild
from projections.runner import lock_key
from tests.conftest import wait_for, worker_database_url
from tests.e2e.conftest import SCREENSHOTS, console_user, log_in
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's worker, caught up)

# Records every state of the progress bar the page shows (each swap replaces the table).
WATCH_PROGRESS = """name => {
  window.seenProgress = [];
  const look = () => {
    const bar = document.querySelector(`tbody[data-projection="${name}"] [role=progressbar]`);
    if (bar) window.seenProgress.push([+bar.getAttribute("aria-valuenow"), +bar.getAttribute("aria-valuemax")]);
  };
  new MutationObserver(look).observe(document.querySelector("main"), {childList: true, subtree: true});
}"""


def seed_accounts(count: int, deposits: int) -> list:
    """Accounts with a few deposits each, one append per account (quicker than a command each)."""
    repo, ids = Repository(Account, EventStore()), []
    for i in range(count):
        account = Account.open(uuid4(), owner=f"Rebuild Seed {i}", currency="EUR")
        for _ in range(deposits):
            account.deposit(100)
        repo.save(account)
        ids.append(account.id)
    return ids


@contextmanager
def holding_a_bucket(projection: str, bucket: int = 0) -> Iterator[None]:
    """Hold the lock of one bucket of a projection, as a long live batch would."""
    with psycopg.connect(worker_database_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", [lock_key(projection), bucket])
        yield


def test_a_rebuild_shows_live_progress_until_the_new_generation_serves_while_writes_continue(worker, page, request):  # noqa: F811
    accounts = seed_accounts(300, deposits=9)
    wait_for(lambda: not runner.lagging_buckets(), timeout=120, what="catch-up of the seeded accounts")
    generation = ProjectionState.objects.get(name="account_entries").generation
    log_in(page, console_user("olga", "operator"))
    page.goto("/projections/")
    row = page.locator('tbody[data-projection="account_entries"]')
    expect(row.locator(".serving")).to_contain_text(f"generation {generation}")
    page.evaluate(WATCH_PROGRESS, "account_entries")

    stop, written, errors = threading.Event(), [], []

    def write() -> None:  # deposits through the command handlers, all through the rebuild
        try:
            while not stop.is_set():
                account = accounts[len(written) % len(accounts)]
                written.append(handlers.account_deposit(account_id=account, amount=1, ctx=CommandContext("e2e")))
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with holding_a_bucket("account_entries"):
            row.get_by_role("button", name="Rebuild").click()
            bar = row.get_by_role("progressbar")
            expect(bar).to_be_visible()
            expect(row.locator(".rebuild .badge")).to_have_text("rebuilding v1")
            job = Rebuild.objects.get(projection="account_entries", state="running")
            first, total = page.evaluate("window.seenProgress[0]")  # as the answer to the click showed it
            assert first <= total  # on a fast machine the rebuild may already wait at its swap
            # The rebuild works up to its swap and waits there; the page follows without a reload.
            wait_for(lambda: Rebuild.objects.get(pk=job.pk).done >= total, what="the rebuild to reach its swap")
            wait_for(lambda: int(bar.get_attribute("aria-valuenow")) >= total, what="the bar to follow")
            expect(row.locator(".rebuild .badge")).to_have_text("rebuilding v1")  # still: the swap waits
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-running.png"), full_page=True)
        expect(row.locator(".rebuild-done")).to_contain_text(f"generation {generation + 1}", timeout=60_000)
        during = len(written)
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    job.refresh_from_db()
    assert job.state == "done", job.error
    assert job.reason == "console" and job.requested_by.username == "olga"
    assert during > 0, "no deposit was made while the rebuild ran"
    expect(bar).to_have_attribute("aria-valuenow", bar.get_attribute("aria-valuemax"))
    expect(row.locator(".serving")).to_contain_text(f"v1 · generation {generation + 1}")
    expect(row.get_by_role("button", name="Rebuild")).to_be_visible()  # ready for the next one
    seen = page.evaluate("window.seenProgress")
    assert seen[-1][0] == seen[-1][1] == job.done, seen[-3:]  # ended full...
    assert len({done for done, _ in seen}) >= 2, seen  # ...having moved there live
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen)), seen  # never went back
    wait_for(lambda: not runner.lagging_buckets(), timeout=60, what="catch-up after the swap")
    assert ProjectionState.objects.get(name="account_entries").generation == generation + 1
