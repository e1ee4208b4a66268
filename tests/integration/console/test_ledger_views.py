"""The console's ledger pages and operator forms through Django's test client: lists, detail,
commands sent as the logged-in user, refusals shown next to the form, role checks and CSRF.
The projections run here in-process (caught_up), as in the API's read-model tests."""

from __future__ import annotations

import re
from uuid import UUID, uuid4

import pytest
from django.urls import reverse

from app.console.views import ledger as ledger_views
from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.store import EventStore
from projections import flags, status
from tests.conftest import wait_for
from tests.integration.api.test_read_models import catch_up_all
from tests.integration.console.clients import console_client, htmx


def caught_up() -> None:
    """Apply every committed event to the read models, here. Another session's open transaction
    (in any database of the server) may hold the read horizon a moment: go on until none is left."""

    def drained() -> bool:
        catch_up_all()
        return status.max_lag() == 0

    wait_for(drained, timeout=30, what="the read models to catch up")


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def open_account(owner: str = "Ann Console", balance: int = 0) -> UUID:
    account = handlers.account_open(account_id=uuid4(), owner=owner, currency="EUR", ctx=ctx()).stream_id
    if balance:
        handlers.account_deposit(account_id=account, amount=balance, ctx=ctx())
    return account


def command_id(html: str, form: str) -> str:
    found = re.search(rf'id="form-{form}".*?name="command_id" value="([^"]+)"', html, re.S)
    assert found, f"no {form} form"
    return found.group(1)


def post_form(client, page: str, form: str, action: str, data: dict, **headers):
    """Fill in a form as shown on `page` (its command id included) and send it."""
    return client.post(action, {"command_id": command_id(client.get(page).content.decode(), form), **data}, **headers)


def account_url(account: UUID) -> str:
    return reverse("console:account", args=[account])


def action_url(account: UUID, action: str) -> str:
    return reverse("console:account_action", args=[account, action])


@pytest.fixture
def operator(transactional_db):
    return console_client("olga", "operator")


@pytest.fixture
def viewer(transactional_db):
    return console_client("vic", "viewer")


def test_a_viewer_reads_every_ledger_page_without_forms(viewer):
    account = open_account("Vera Viewer", balance=500)
    other = open_account("Otto Other")
    transfer = handlers.transfer_request(
        transfer_id=uuid4(), from_account=account, to_account=other, amount=100, ctx=ctx()
    ).stream_id
    caught_up()
    pages = {
        reverse("console:accounts"): "Vera Viewer",
        account_url(account): "+5.00",
        reverse("console:transfers"): "Otto Other",
        reverse("console:transfer", args=[transfer]): "pending",
    }
    for url, text in pages.items():
        response = viewer.get(url)
        html = response.content.decode()
        assert response.status_code == 200 and text in html, url
        assert "command-form" not in html and "command_id" not in html, url


def test_a_viewer_posting_any_ledger_command_gets_403_and_nothing_is_appended(viewer):
    account = open_account("Untouched", balance=50)
    before = len(EventStore().read_stream(account))
    posts = {
        reverse("console:account_open"): {"owner": "X", "currency": "EUR", "overdraft_limit": 0},
        reverse("console:transfer_request"): {"from_account": account, "to_account": uuid4(), "amount": 1},
        **{action_url(account, a): {"amount": 10, "reason": "r"} for a in ledger_views.ACCOUNT_ACTIONS},
    }
    for url, data in posts.items():
        assert viewer.post(url, {"command_id": uuid4(), **data}).status_code == 403, url
        assert viewer.post(url, {"command_id": uuid4(), **data}, **htmx("form")).status_code == 403, url
    assert len(EventStore().read_stream(account)) == before


def test_an_operator_opens_an_account_and_lands_on_it_with_its_balance(operator):
    response = post_form(
        operator,
        reverse("console:accounts"),
        "open",
        reverse("console:account_open"),
        {"owner": "Olive Opened", "currency": "eur", "overdraft_limit": "2.50"},
    )
    assert response.status_code == 302
    path, query = response.url.split("?")
    account = UUID(path.rstrip("/").rsplit("/", 1)[1])
    [opened] = EventStore().read_stream(account)
    assert opened.data == {"owner": "Olive Opened", "currency": "EUR", "overdraft_limit": 250}
    assert opened.metadata["actor"] == "olga" and opened.metadata["command"] == "OpenAccount"
    assert query == f"consistent_with={opened.position}"
    caught_up()
    html = operator.get(response.url).content.decode()
    assert "Olive Opened" in html and "Opened the account." in html  # the notice names no one (see forgetting)
    assert "not caught up" not in html and 'id="form-deposit"' in html and 'id="form-freeze"' in html


def test_a_deposit_shows_the_new_balance_after_the_redirect(operator):
    account = open_account("Dee Positor", balance=100)
    caught_up()
    response = post_form(
        operator, account_url(account), "deposit", action_url(account, "deposit"), {"amount": "2.50", "reference": "x"}
    )
    assert response.status_code == 302 and "consistent_with=" in response.url
    caught_up()
    html = operator.get(response.url).content.decode()
    assert re.search(r'id="balance">3.50 ', html) and "Deposited 2.50 EUR." in html
    assert EventStore().read_stream(account)[-1].metadata["actor"] == "olga"
    assert EventStore().read_stream(account)[-1].data["amount"] == 250


def test_a_command_the_read_models_have_not_applied_says_the_page_may_be_behind(operator, settings):
    settings.CONSISTENCY_TIMEOUT_S = 0.2
    account = open_account("Stale Steve")
    caught_up()
    result = handlers.account_deposit(account_id=account, amount=5, ctx=ctx())
    html = operator.get(f"{account_url(account)}?consistent_with={result.position}").content.decode()
    assert "have not caught up with your command yet" in html


@pytest.mark.parametrize("position", ["²", "9" * 19, "1" * 5000, "-1", "1e3", " 7"])
def test_a_position_that_cannot_be_one_waits_for_nothing_and_is_no_error(viewer, position):
    account = open_account("Odd Otto")
    for page in (reverse("console:accounts"), account_url(account), reverse("console:transfer", args=[uuid4()])):
        answer = viewer.get(page, {"consistent_with": position})
        assert answer.status_code in (200, 404), page
        assert "have not caught up" not in answer.content.decode()


def test_withdrawing_more_than_the_balance_shows_the_apis_words_next_to_the_form(operator):
    account = open_account("Wanda Withdraw", balance=100)
    caught_up()
    page = account_url(account)
    response = post_form(operator, page, "withdraw", action_url(account, "withdraw"), {"amount": "5.00"})
    html = response.content.decode()
    assert response.status_code == 200 and "Wanda Withdraw" in html  # the whole page, without JavaScript
    refusal = re.search(r'<p class="form-error refusal" role="alert" data-code="([a-z_]+)">(.*?)</p>', html, re.S)
    assert refusal.group(1) == "insufficient_funds"
    said = "withdrawing 5.00 EUR would take the balance of 1.00 EUR below the overdraft limit of 0.00 EUR"
    assert f"Insufficient funds:</strong> {said}" in refusal.group(2)  # the API's words, its amounts as money
    assert 'value="5.00"' in html  # what was typed stays
    fragment = post_form(operator, page, "withdraw", action_url(account, "withdraw"), {"amount": "5"}, **htmx("x"))
    body = fragment.content.decode()
    assert fragment.status_code == 200 and body.lstrip().startswith('<form id="form-withdraw"')  # only the form
    assert said in body and "<html" not in body
    assert len(EventStore().read_stream(account)) == 2


def test_invalid_input_is_shown_per_field(operator):
    account = open_account("Ivan Invalid")
    caught_up()
    response = post_form(operator, account_url(account), "deposit", action_url(account, "deposit"), {"amount": "0"})
    assert response.status_code == 200
    assert "Enter an amount above zero." in response.content.decode()
    opened = post_form(
        operator,
        reverse("console:accounts"),
        "open",
        reverse("console:account_open"),
        {"owner": "", "currency": "EURO", "overdraft_limit": "-1"},
        **htmx("form-open"),
    ).content.decode()
    assert "This field is required." in opened and "a three-letter ISO 4217 code" in opened
    limit = post_form(
        operator,
        reverse("console:accounts"),
        "open",
        reverse("console:account_open"),
        {"owner": "Ivan", "currency": "EUR", "overdraft_limit": "-1"},
        **htmx("form-open"),
    ).content.decode()
    assert "Enter no sign." in limit


def test_a_form_sent_twice_is_done_once(operator):
    account = open_account("Twice Tina")
    caught_up()
    html = operator.get(account_url(account)).content.decode()
    data = {"command_id": command_id(html, "deposit"), "amount": "10"}
    assert operator.post(action_url(account, "deposit"), data).status_code == 302
    again = operator.post(action_url(account, "deposit"), data)
    assert again.status_code == 302 and "consistent_with" not in again.url
    assert [e.type for e in EventStore().read_stream(account)].count("ledger.FundsDeposited") == 1
    assert "This form was sent before" in operator.get(again.url).content.decode()


def test_freeze_unfreeze_and_close_with_their_refusals(operator):
    account = open_account("Fran Freeze", balance=40)
    caught_up()
    page = account_url(account)
    assert post_form(operator, page, "freeze", action_url(account, "freeze"), {"reason": "audit"}).status_code == 302
    caught_up()
    html = operator.get(page).content.decode()
    assert 'id="form-unfreeze"' in html and 'id="form-freeze"' not in html and "status-frozen" in html
    refused = post_form(operator, page, "withdraw", action_url(account, "withdraw"), {"amount": "1"}).content.decode()
    assert "Account frozen:</strong> the account is frozen" in refused
    assert post_form(operator, page, "unfreeze", action_url(account, "unfreeze"), {}).status_code == 302
    refused = post_form(operator, page, "close", action_url(account, "close"), {}).content.decode()
    assert "Balance not zero:</strong> the balance is 0.40 EUR, not zero" in refused
    post_form(operator, page, "withdraw", action_url(account, "withdraw"), {"amount": "0.40"})
    assert post_form(operator, page, "close", action_url(account, "close"), {"reason": "done"}).status_code == 302
    caught_up()
    html = operator.get(page).content.decode()
    assert "status-closed" in html and "command-form" not in html and "takes no more commands" in html
    assert operator.post(action_url(account, "explode"), {}).status_code == 404


def test_transfers_are_requested_checked_and_listed(operator):
    source, target = open_account("Sam Source", balance=300), open_account("Tom Target")
    caught_up()
    page = f"{reverse('console:transfers')}?from={source}"
    assert f'value="{source}"' in operator.get(page).content.decode()  # "transfer from it" fills in the source
    url = reverse("console:transfer_request")
    same = post_form(operator, page, "transfer", url, {"from_account": source, "to_account": source, "amount": "5"})
    assert "Same account:" in same.content.decode()
    unknown = uuid4()
    missing = post_form(operator, page, "transfer", url, {"from_account": source, "to_account": unknown, "amount": 5})
    assert f"Not found:</strong> no account {unknown}" in missing.content.decode()
    requested = {"from_account": source, "to_account": target, "amount": "1.20"}
    response = post_form(operator, page, "transfer", url, requested)
    assert response.status_code == 302
    transfer = UUID(response.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])
    caught_up()
    html = operator.get(response.url).content.decode()
    assert "Transfer of 1.20 EUR" in html and "(120 in minor units)" in html
    assert "Sam Source" in html and "Tom Target" in html and "pending" in html
    listed = operator.get(f"{reverse('console:transfers')}?account={target}&status=pending").content.decode()
    assert str(transfer)[:8] in listed and "Transfers from or to" in listed
    assert str(transfer)[:8] not in operator.get(f"{reverse('console:transfers')}?status=failed").content.decode()


def test_accounts_are_searched_filtered_and_paged(viewer, monkeypatch):
    monkeypatch.setattr(ledger_views, "PAGE_SIZE", 2)
    tag = uuid4().hex[:6]
    names = [f"Pager {tag} {i}" for i in range(5)]
    for name in names:
        open_account(name)
    caught_up()
    seen, url = [], f"{reverse('console:accounts')}?owner={tag.upper()}"
    while url:
        html = viewer.get(url).content.decode()
        seen += re.findall(rf"Pager {tag} \d", html)
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == names[::-1]  # newest first
    assert (
        "No account matches" in viewer.get(f"{reverse('console:accounts')}?owner={tag}&status=closed").content.decode()
    )
    assert "not valid any more" in viewer.get(f"{reverse('console:accounts')}?cursor=garbage").content.decode()
    fragment = viewer.get(reverse("console:accounts"), **htmx("accounts-list")).content.decode()
    assert fragment.lstrip().startswith('<section id="accounts-list"')


def test_an_unknown_account_or_transfer_is_a_404_page(viewer):
    assert viewer.get(account_url(uuid4())).status_code == 404
    assert viewer.get(reverse("console:transfer", args=[uuid4()])).status_code == 404


def test_backpressure_refuses_a_command_next_to_the_form(operator):
    account = open_account("Busy Bea")
    caught_up()
    flags.publish_max_lag(10**9)
    try:
        html = post_form(operator, account_url(account), "deposit", action_url(account, "deposit"), {"amount": "1"})
    finally:
        flags.publish_max_lag(0)
    assert "Backpressure:</strong> the read models are more than" in html.content.decode()
    assert len(EventStore().read_stream(account)) == 1


def test_csrf_is_enforced_on_the_ledger_forms(transactional_db):
    operator = console_client("olga", "operator", enforce_csrf_checks=True)
    account = open_account("Cora Csrf")
    caught_up()
    html = operator.get(account_url(account)).content.decode()
    data = {"command_id": command_id(html, "deposit"), "amount": "10"}
    assert operator.post(action_url(account, "deposit"), data).status_code == 403
    assert len(EventStore().read_stream(account)) == 1
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    assert operator.post(action_url(account, "deposit"), {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert len(EventStore().read_stream(account)) == 2


# -- forgetting the owner (admins) ------------------------------------------------------------------
@pytest.fixture
def admin(transactional_db):
    return console_client("ada", "admin")


def forget_url(account: UUID) -> str:
    return reverse("console:account_forget", args=[account])


def test_only_an_admin_sees_the_forget_form(operator, admin):
    account = open_account("Fay Formless")
    caught_up()
    assert 'id="form-forget"' not in operator.get(account_url(account)).content.decode()
    assert 'id="form-forget"' in admin.get(account_url(account)).content.decode()


def test_forgetting_needs_the_account_id_typed_again(admin):
    account = open_account("Wanda Wrongid")
    caught_up()
    response = post_form(admin, account_url(account), "forget", forget_url(account), {"confirm": str(uuid4())})
    assert response.status_code == 200 and "this is not the account" in response.content.decode()
    htmx_response = post_form(
        admin, account_url(account), "forget", forget_url(account), {"confirm": "nope"}, **htmx("form-forget")
    )
    assert htmx_response.status_code == 200 and 'id="form-forget"' in htmx_response.content.decode()
    assert [e.type for e in EventStore().read_stream(account)] == ["ledger.AccountOpened"]


def test_an_admin_forgets_the_owner_and_the_page_shows_it_forgotten(admin):
    account = open_account("Frieda Forgettable", balance=700)
    caught_up()
    response = post_form(admin, account_url(account), "forget", forget_url(account), {"confirm": str(account)})
    assert response.status_code == 302 and "consistent_with=" in response.url
    [*_, audit] = EventStore().read_stream(account)
    assert audit.type == "ledger.AccountOwnerForgotten" and audit.metadata["actor"] == "ada"
    caught_up()
    html = admin.get(response.url).content.decode()
    assert "Frieda" not in html and "[forgotten]" in html and "The owner was forgotten" in html
    assert 'id="form-forget"' not in html and 'id="form-deposit"' in html and "7.00" in html
