"""Money as people read and type it (app/ledger/money.py): formatted with the currency's decimals
and thousands separators, typed text parsed back exactly, bad text refused with a sentence."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ledger.domain.errors import AccountFrozen, InsufficientFunds
from app.ledger.domain.events import MAX_AMOUNT
from app.ledger.money import amounts_in, format_amount, format_money, parse_amount, whole

# none, two and three decimals, and CLF's four
CURRENCIES = st.sampled_from(["JPY", "EUR", "USD", "BHD", "KWD", "CLF"])


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (131066, "EUR", "1,310.66 EUR"),
        (5, "EUR", "0.05 EUR"),
        (-131066, "EUR", "-1,310.66 EUR"),
        (0, "USD", "0.00 USD"),
        (1310, "JPY", "1,310 JPY"),
        (1234567, "BHD", "1,234.567 BHD"),
        (MAX_AMOUNT, "EUR", "92,233,720,368,547,758.07 EUR"),
    ],
)
def test_money_reads_as_money(minor, currency, shown):
    assert format_money(minor, currency) == shown


def test_another_locale_uses_its_own_separators():
    assert format_amount(131066, "EUR", locale="de") == "1.310,66"


@given(st.integers(min_value=1, max_value=MAX_AMOUNT), CURRENCIES)
def test_what_is_shown_parses_back_to_the_same_minor_units(minor, currency):
    assert parse_amount(format_amount(minor, currency), currency) == minor


@given(st.integers(min_value=1, max_value=MAX_AMOUNT), CURRENCIES)
def test_plain_digits_without_separators_parse_too(minor, currency):
    assert parse_amount(format_amount(minor, currency).replace(",", ""), currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("10.50", "EUR", 1050),
        ("10.5", "EUR", 1050),
        ("10", "EUR", 1000),
        (" 0.01 ", "EUR", 1),
        ("1,310.66", "EUR", 131066),
        ("1,310", "JPY", 1310),
        ("12.000", "JPY", 12),  # zeros after the point change nothing
        ("1.234", "BHD", 1234),
        ("0.1", "BHD", 100),
        ("0.30000000000000004", "EUR", None),  # what a float would make of 0.1 + 0.2: refused, not rounded
    ],
)
def test_typed_amounts_are_converted_exactly(text, currency, minor):
    if minor is None:
        with pytest.raises(ValueError, match="2 decimals"):
            parse_amount(text, currency)
    else:
        assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "says"),
    [
        ("", "EUR", "Enter an amount"),
        ("10.505", "EUR", "EUR has 2 decimals"),
        ("1.5", "JPY", "JPY has no decimals"),
        ("-1", "EUR", "without a sign"),
        ("0", "EUR", "above zero"),
        ("0.00", "EUR", "above zero"),
        ("1e3", "EUR", "plain decimal amount"),
        ("1E3", "EUR", "plain decimal amount"),
        ("\u0661\u0662", "EUR", "plain decimal amount"),  # Arabic-Indic digits
        ("\uff11\uff12", "EUR", "plain decimal amount"),  # full-width digits
        ("\u00b2", "EUR", "plain decimal amount"),
        ("10,50", "EUR", "plain decimal amount"),  # a decimal comma is not taken for thousands
        ("1,31", "EUR", "plain decimal amount"),
        ("1 000", "EUR", "plain decimal amount"),
        ("NaN", "EUR", "plain decimal amount"),
        ("Infinity", "EUR", "plain decimal amount"),
        ("+5", "EUR", "plain decimal amount"),
        (".5", "EUR", "plain decimal amount"),
        ("5.", "EUR", "plain decimal amount"),
        ("1_000", "EUR", "plain decimal amount"),
        ("92233720368547758.08", "EUR", "at most 92,233,720,368,547,758.07 EUR"),
        ("9" * 64, "EUR", "at most"),
        ("9" * 65, "EUR", "plain decimal amount"),
    ],
)
def test_text_that_is_no_exact_amount_is_refused_with_a_sentence(text, currency, says):
    with pytest.raises(ValueError, match=says):
        parse_amount(text, currency)


def test_a_limit_may_be_zero_but_not_negative():
    assert parse_amount("0", "EUR", minimum=0) == 0
    with pytest.raises(ValueError, match="Enter no sign"):
        parse_amount("-1", "EUR", minimum=0)


def test_the_amounts_in_an_event_or_a_state():
    state = {"currency": "EUR", "balance": 131066, "overdraft_limit": 0, "status": "open", "frozen": True}
    assert amounts_in(state, "EUR") == {"balance": "1,310.66 EUR", "overdraft_limit": "0.00 EUR"}
    assert amounts_in({"amount": 5}, None) == {}


def test_a_balance_summed_as_numeric_reads_as_money_exactly():
    assert format_money(Decimal("9" * 40), "EUR") == "99,999,999,999,999,999,999,999,999,999,999,999,999.99 EUR"
    assert format_money(Decimal("-131066"), "EUR") == "-1,310.66 EUR"
    assert [whole(v) for v in (Decimal("1.5"), Decimal("NaN"), True, "5", 7)] == [None, None, None, None, 7]


def test_a_refusal_that_names_amounts_says_them_as_numbers_or_as_money():
    refused = InsufficientFunds(
        "withdrawing {amount} would take the balance of {balance} below", amount=500, balance=100
    )
    assert refused.detail == "withdrawing 500 would take the balance of 100 below"  # the API's words
    assert (
        refused.detail_with(lambda minor: format_money(minor, "EUR"))
        == "withdrawing 5.00 EUR would take the balance of 1.00 EUR below"
    )
    assert AccountFrozen("the account is {frozen}").detail_with(str) == "the account is {frozen}"  # no amounts: as is
