"""The stream page in a real browser: the aggregate time machine steps through history without a
reload, and the event list grows live when the stream does."""

from __future__ import annotations

from uuid import UUID, uuid4

from app.ledger import handlers
from app.ledger.commands import CommandContext
from tests.e2e.conftest import console_user, log_in

DEPOSITS = (1_500, 2_500, 4_000)


def open_account_with_deposits() -> UUID:
    """Versions: 1 opened, 2-4 the deposits (committed: the server reads them)."""
    account_id = uuid4()
    handlers.account_open(account_id=account_id, owner="Tess Machine", currency="EUR", ctx=CommandContext(actor="e2e"))
    for amount in DEPOSITS:
        handlers.account_deposit(account_id=account_id, amount=amount, ctx=CommandContext(actor="e2e"))
    return account_id


def balance(page) -> str:
    """The stored integer (the cell also shows it as money)."""
    return page.locator('#tm-state tr[data-field="balance"] td.value .stored').inner_text().strip()


def test_the_time_machine_shows_the_right_balance_at_a_chosen_earlier_version(page, transactional_db):
    account = open_account_with_deposits()
    log_in(page, console_user("tessa", "viewer"))
    page.goto(f"/streams/{account}/")
    assert page.locator("#tm-version").inner_text() == "Version 4 of 4"
    assert balance(page) == str(sum(DEPOSITS))
    page.evaluate("window.__marker = 1")  # gone if the document reloads

    page.locator("#tm-slider").fill("3")  # the range input fires "input": htmx fetches the state
    page.wait_for_function("document.querySelector('#tm-version').innerText === 'Version 3 of 4'")
    assert balance(page) == str(DEPOSITS[0] + DEPOSITS[1])
    assert page.locator('#tm-state tr[data-field="balance"] td.value .money').inner_text() == "= 40.00 EUR"

    page.click('.tm-versions a[data-version="2"]')  # a boosted link of the version list
    page.wait_for_function("document.querySelector('#tm-version').innerText === 'Version 2 of 4'")
    assert page.evaluate("window.__marker") == 1, "the page reloaded"
    assert page.url.endswith(f"/streams/{account}/?version=2")  # the address follows, for reload and back
    assert balance(page) == str(DEPOSITS[0])
    changed = page.locator("#tm-state tr.diff-changed")
    assert changed.count() == 1 and changed.get_attribute("data-field") == "balance"
    assert page.locator("#tm-slider").input_value() == "2"  # the slider moved with the list
    assert page.locator('.tm-versions a[aria-current="true"]').inner_text() == "v2"
    assert "ledger.FundsDeposited" in page.locator("#tm-state").inner_text()  # the event beside the state

    page.click("#tm-prev")
    page.wait_for_function("document.querySelector('#tm-version').innerText === 'Version 1 of 4'")
    assert balance(page) == "0" and page.evaluate("window.__marker") == 1
    page.go_back()  # history holds each step
    page.wait_for_function("document.querySelector('#tm-version').innerText === 'Version 2 of 4'")
    assert balance(page) == str(DEPOSITS[0])


def test_the_stream_page_shows_a_new_event_without_a_reload(page, transactional_db):
    account = open_account_with_deposits()
    log_in(page, console_user("tessa", "viewer"))
    page.goto(f"/streams/{account}/")
    page.wait_for_function("document.getElementById('live-state').innerText === 'live'")
    page.evaluate("window.__marker = 1")
    rows = page.locator("#stream-events tbody tr")
    assert rows.count() == 4

    handlers.account_withdraw(account_id=account, amount=700, ctx=CommandContext(actor="e2e"))
    page.wait_for_function("document.querySelectorAll('#stream-events tbody tr').length === 5", timeout=5_000)
    assert "ledger.FundsWithdrawn" in rows.nth(4).inner_text()
    # the time machine showed the latest version, so it follows the stream
    page.wait_for_function("document.querySelector('#tm-version').innerText === 'Version 5 of 5'", timeout=5_000)
    assert balance(page) == str(sum(DEPOSITS) - 700)
    assert page.locator("#tm-slider").get_attribute("max") == "5"
    assert page.evaluate("window.__marker") == 1
