"""The ledger pages in a real browser: what a viewer may not see, and a refusal shown next to its
form without reloading anything else."""

from __future__ import annotations

from uuid import uuid4

from playwright.sync_api import expect

from app.ledger import handlers
from app.ledger.commands import CommandContext
from projections import tracebacks
from projections.base import projection_registry
from projections.models import BucketCheckpoint
from projections.runner import ensure_checkpoints
from projections.status import applied
from tests.conftest import wait_for
from tests.e2e.conftest import SCREENSHOTS, console_user, log_in
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's worker, caught up)


def ctx() -> CommandContext:
    return CommandContext(actor="e2e")


def account_with(owner: str, balance: int):
    """An account with a balance, once the read models show it."""
    last = handlers.account_open(account_id=uuid4(), owner=owner, currency="EUR", ctx=ctx())
    account = last.stream_id
    if balance:
        last = handlers.account_deposit(account_id=account, amount=balance, ctx=ctx())
    wait_for(lambda: applied(["account_summary", "account_entries"], last.position), what="the read models")
    return account


def test_a_viewer_sees_no_operator_controls(worker, page):  # noqa: F811
    source, target = account_with("Vic's Source", 300), account_with("Vic's Target", 0)
    transfer = handlers.transfer_request(
        transfer_id=uuid4(), from_account=source, to_account=target, amount=100, ctx=ctx()
    ).stream_id
    ensure_checkpoints(projection_registry.get("daily_totals"), force=True)
    BucketCheckpoint.objects.filter(projection="daily_totals", bucket=63).update(
        failed=True, error=f'{tracebacks.HEADER}  File "app/ledger/projections.py", line 9, in parked_for_the_viewer\n'
    )
    log_in(page, console_user("vera", "viewer"))

    page.goto("/projections/")
    expect(page.get_by_text("in parked_for_the_viewer")).to_be_attached()  # the (redacted) traceback: yes
    for control in ("Rebuild", "Pause", "Resume", "Retry", "Skip the event"):
        expect(page.get_by_role("button", name=control)).to_have_count(0)

    for url, shown in (
        ("/accounts/?owner=vic%27s", "Vic's Source"),
        (f"/accounts/{source}/", "Entries"),
        ("/transfers/", "Vic's Target"),
        (f"/transfers/{transfer}/", "Transfer of 1.00 EUR"),
    ):
        page.goto(url)
        expect(page.locator("main")).to_contain_text(shown)
        expect(page.locator("main form[method=post], main [hx-post]")).to_have_count(0)
        assert set(page.locator("main button").all_inner_texts()) <= {"Search", "Filter"}, url  # GET filters only
        expect(page.get_by_text("transfer from it")).to_have_count(0)
    page.goto(f"/accounts/{source}/")  # the screenshot


def test_a_refusal_shows_next_to_its_form_and_nothing_else_reloads(worker, page):  # noqa: F811
    account = account_with("Wendy Withdraw", 100)
    log_in(page, console_user("olga", "operator"))
    page.goto(f"/accounts/{account}/")
    expect(page.locator("#balance")).to_contain_text("1.00 EUR")
    page.evaluate("window.notReloaded = true")
    page.locator("#deposit-reference").fill("typed, not sent")  # another form: it must keep this

    withdraw = page.locator("#form-withdraw")
    withdraw.get_by_label("Amount (EUR)").fill("5.00")
    withdraw.get_by_role("button", name="Withdraw").click()
    refusal = page.locator("#form-withdraw .refusal")
    expect(refusal).to_contain_text("Insufficient funds: withdrawing 5.00 EUR would take the balance of 1.00 EUR below")
    expect(page.locator("#form-withdraw").get_by_label("Amount (EUR)")).to_have_value("5.00")
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#deposit-reference")).to_have_value("typed, not sent")
    expect(page.locator("#balance")).to_contain_text("1.00 EUR")
    page.screenshot(path=str(SCREENSHOTS / "test_a_refusal_shows_next_to_its_form-refused.png"), full_page=True)

    page.locator("#form-withdraw").get_by_label("Amount (EUR)").fill("0.40")
    page.locator("#form-withdraw").get_by_role("button", name="Withdraw").click()
    expect(page.locator(".messages")).to_contain_text("Withdrew 0.40 EUR.")
    expect(page.locator("#balance")).to_contain_text("0.60 EUR")  # the redirect waited for the read model
    expect(page.locator("table.entries tbody tr").first).to_contain_text("-0.40")
    expect(page.locator("#form-withdraw .refusal")).to_have_count(0)


def test_an_admin_forgets_an_owner_after_typing_the_account_id(worker, page):  # noqa: F811
    account = account_with("Gwendolyn Gone", 250)
    log_in(page, console_user("ada", "admin"))
    page.goto(f"/accounts/{account}/")
    expect(page.locator("h1")).to_contain_text("Gwendolyn Gone")
    forget = page.locator("#form-forget")
    forget.get_by_label("Type the account id to confirm").fill("not the id")
    forget.get_by_role("button", name="Forget the owner for good").click()
    expect(page.locator("#form-forget")).to_contain_text("this is not the account's id: nothing was forgotten")
    expect(page.locator("h1")).to_contain_text("Gwendolyn Gone")  # only the form was swapped

    page.locator("#form-forget").get_by_label("Type the account id to confirm").fill(str(account))
    page.locator("#form-forget").get_by_role("button", name="Forget the owner for good").click()
    expect(page.get_by_text("The owner was forgotten")).to_be_visible()  # the notice
    expect(page.locator("h1")).to_contain_text("[forgotten]")
    expect(page.locator("#balance")).to_contain_text("2.50 EUR")
    expect(page.locator("#form-forget")).to_have_count(0)
    assert "Gwendolyn" not in page.content()
