"""The Dashboard in a real browser: the activity chart (server-rendered SVG) grows live as events
are appended, with totals, projection health and the worker and broker answering."""

from __future__ import annotations

import re
import time
from uuid import uuid4

import pytest
from playwright.sync_api import expect

from app.ledger import handlers
from app.ledger.commands import CommandContext
from tests.e2e.conftest import console_user, log_in
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's worker, caught up)


def ctx() -> CommandContext:
    return CommandContext(actor="dashboard-test")  # a new command id (and so new event ids) each time


def chart_total(page) -> int:
    text = page.locator("#dash-chart p.muted").first.inner_text()
    return int(re.search(r"(\d+) events", text).group(1))


@pytest.mark.usefixtures("worker")
def test_the_dashboard_shows_activity_totals_and_health_and_its_chart_grows_live(page, server):
    account = handlers.account_open(account_id=uuid4(), owner="Dana", currency="EUR", ctx=ctx()).stream_id
    handlers.account_deposit(account_id=account, amount=1_000, ctx=ctx())

    log_in(page, console_user("dora", "viewer"))
    page.goto("/")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("window.notReloaded = true")

    chart = page.locator("#dash-chart svg.chart")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 1
    expect(page.locator("#dash-chart .chart-legend")).to_contain_text("ledger.AccountOpened")
    expect(page.locator("#dash-health")).to_contain_text("answering")  # the session's worker
    expect(page.locator("#dash-health h2 .badge")).to_have_text("healthy")
    expect(page.locator("#dash-projections")).to_contain_text("account_summary")
    expect(page.locator("#dash-projections")).to_contain_text("transfer_process")
    before = chart_total(page)

    for amount in (10, 20, 30):
        handlers.account_deposit(account_id=account, amount=amount, ctx=ctx())
    page.wait_for_function(
        "n => +(/(\\d+) events/.exec(document.querySelector('#dash-chart p.muted').textContent) || [0, 0])[1] >= n",
        arg=before + 3,
        timeout=5000,
    )
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#dash-stats [data-testid=events-total]")).not_to_have_text("0")


def shown(page, testid: str) -> int:
    return int(page.locator(f"#dash-commands [data-testid={testid}]").inner_text())


@pytest.mark.usefixtures("worker")
def test_the_command_rate_and_error_rate_beside_the_chart_follow_commands_live(page, server):
    from app.core import command_rate
    from app.ledger import commands
    from app.ledger.domain.errors import InsufficientFunds

    sender = commands.Sender(actor="dashboard-test")
    account = commands.send(handlers.account_open, sender, owner="Cora Count", currency="EUR").stream_id
    log_in(page, console_user("cora", "viewer"))
    page.goto("/")
    expect(page.locator("#live-state")).to_have_text("live")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#dash-commands svg.chart")).to_be_visible()
    ok, refused, errors = shown(page, "commands-ok"), shown(page, "commands-refused"), shown(page, "commands-error")
    assert ok >= 1  # the account opened above

    def broken(**arguments):  # a handler with a bug: the API's 500, an "error" on the dashboard
        raise RuntimeError("a bug")

    broken.__name__ = "account_deposit"
    if time.time() % command_rate.SLOT_S > command_rate.SLOT_S - 1:  # not astride two slots
        time.sleep(command_rate.SLOT_S - time.time() % command_rate.SLOT_S + 0.1)
    failed_in = command_rate.slot_of(time.time())
    with pytest.raises(RuntimeError):
        commands.send(broken, sender, account_id=account, amount=1)
    assert command_rate.slot_of(time.time()) == failed_in
    with pytest.raises(InsufficientFunds):
        commands.send(handlers.account_withdraw, sender, account_id=account, amount=10**6)
    for amount in (1, 2, 3):
        commands.send(handlers.account_deposit, sender, account_id=account, amount=amount)
    page.wait_for_function(
        """([ok, refused, errors]) => {
            const n = id => +document.querySelector(`#dash-commands [data-testid=${id}]`).textContent;
            return n('commands-ok') >= ok && n('commands-refused') >= refused && n('commands-error') >= errors;
        }""",
        arg=[ok + 3, refused + 1, errors + 1],
        timeout=8000,
    )
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#dash-commands rect").count() >= 1

    # The error rate is the last full 10 s slot's: once the failure's slot has ended, the next
    # fetch (after a live hint, here a deposit's) shows it, for the 10 s that slot stays the last.
    time.sleep(max(0.0, failed_in + command_rate.SLOT_S + 0.3 - time.time()))
    commands.send(handlers.account_deposit, sender, account_id=account, amount=4)
    page.wait_for_function(
        "() => parseFloat(document.querySelector('#dash-commands [data-testid=error-rate]').textContent) > 0",
        timeout=8000,
    )
    assert page.evaluate("window.notReloaded") is True
