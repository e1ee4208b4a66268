"""Money in the console: amounts read with their currency's decimals and separators on every page
that shows one, and the forms take decimals, converted exactly to the minor units the events keep
(the time machine and the event page show both)."""

from __future__ import annotations

import re
from uuid import uuid4

import pytest
from django.urls import reverse

from app.ledger import handlers
from eventstore.store import EventStore
from tests.integration.console.clients import console_client, htmx
from tests.integration.console.test_ledger_views import account_url, action_url, caught_up, ctx, post_form


@pytest.fixture
def operator(transactional_db):
    return console_client("olga-money", "operator")


def opened(owner: str, currency: str, balance: int = 0):
    account = handlers.account_open(account_id=uuid4(), owner=owner, currency=currency, ctx=ctx()).stream_id
    if balance:
        handlers.account_deposit(account_id=account, amount=balance, ctx=ctx())
    return account


def test_every_page_that_shows_an_amount_shows_money(operator):
    source, target = opened("Mona Money", "EUR", balance=131066), opened("Tara Target", "EUR")
    handlers.transfer_request(
        transfer_id=(transfer := uuid4()), from_account=source, to_account=target, amount=1050, ctx=ctx()
    )
    caught_up()
    accounts = operator.get(reverse("console:accounts")).content.decode()
    assert re.search(r"1,310\.66 <span class=\"muted\">EUR</span>", accounts) and "131066" not in accounts
    account = operator.get(account_url(source)).content.decode()
    assert 'id="balance">1,310.66 <span class="muted">EUR' in account and "+1,310.66" in account
    transfers = operator.get(reverse("console:transfers")).content.decode()
    assert "10.50 <span" in transfers
    shown = operator.get(reverse("console:transfer", args=[transfer])).content.decode()
    assert "Transfer of 10.50 EUR" in shown and "(1050 in minor units)" in shown


def test_the_time_machine_and_the_event_page_show_the_stored_integer_and_the_money(operator):
    account = opened("Tim Machine", "BHD", balance=1234567)
    caught_up()
    state = operator.get(reverse("console:stream", args=[account]), {"version": 2}).content.decode()
    balance = re.search(r'<tr data-field="balance".*?</tr>', state, re.S).group(0)
    assert "1234567" in balance and "= 1,234.567 BHD" in balance and "= 0.000 BHD" in balance  # now, and before
    assert re.search(r'id="tm-event-money">.*amount</span> = 1,234.567 BHD', state)
    deposited = EventStore().read_stream(account)[-1]
    event = operator.get(reverse("console:event", args=[deposited.event_id])).content.decode()
    assert "&quot;amount&quot;: 1234567" in event and "amount</span> = 1,234.567 BHD" in event


@pytest.mark.parametrize(
    ("currency", "typed", "minor"),
    [("EUR", "10.50", 1050), ("EUR", "1,000", 100000), ("JPY", "1,310", 1310), ("BHD", "0.005", 5)],
)
def test_a_decimal_amount_is_sent_as_exact_minor_units(operator, currency, typed, minor):
    account = opened("Dora Decimal", currency)
    caught_up()
    response = post_form(operator, account_url(account), "deposit", action_url(account, "deposit"), {"amount": typed})
    assert response.status_code == 302, response.content.decode()[:300]
    assert EventStore().read_stream(account)[-1].data["amount"] == minor


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("10.505", "EUR has 2 decimals"),
        ("-5", "without a sign"),
        ("0", "above zero"),
        ("1e3", "plain decimal amount"),
        ("\u0661\u0662", "plain decimal amount"),
        ("10,50", "plain decimal amount"),
        ("92233720368547758.08", "at most 92,233,720,368,547,758.07 EUR"),
    ],
)
def test_an_amount_that_is_not_exact_money_is_refused_next_to_its_field(operator, typed, says):
    account = opened("Rita Refused", "EUR")
    caught_up()
    page, action = account_url(account), action_url(account, "deposit")
    fragment = post_form(operator, page, "deposit", action, {"amount": typed}, **htmx("form-deposit"))
    assert fragment.status_code == 200
    html = fragment.content.decode()
    field = re.search(r'class="field invalid">\s*<label for="deposit-amount">.*?role="alert">([^<]*)</p>', html, re.S)
    assert field and says in field.group(1)
    assert len(EventStore().read_stream(account)) == 1


def test_a_yen_account_refuses_decimals_and_a_transfer_uses_its_source_currency(operator):
    yen, other = opened("Yuki Yen", "JPY", balance=5000), opened("Oto Other", "JPY")
    caught_up()
    refused = post_form(operator, account_url(yen), "withdraw", action_url(yen, "withdraw"), {"amount": "1.5"})
    assert "JPY has no decimals: enter a whole number." in refused.content.decode()
    page, url = reverse("console:transfers"), reverse("console:transfer_request")
    sent = post_form(operator, page, "transfer", url, {"from_account": yen, "to_account": other, "amount": "1,200"})
    assert sent.status_code == 302
    transfer = sent.url.split("?")[0].rstrip("/").rsplit("/", 1)[1]
    assert EventStore().read_stream(transfer)[0].data["amount"] == 1200
    unknown = post_form(operator, page, "transfer", url, {"from_account": uuid4(), "to_account": other, "amount": "1"})
    assert unknown.status_code == 200 and "No account has this id." in unknown.content.decode()
