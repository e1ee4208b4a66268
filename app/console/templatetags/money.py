"""Amounts as money: `{{ minor_units|money:currency }}` -> "1,310.66 EUR" and
`{{ minor_units|amount:currency }}` -> "1,310.66" (a column headed with its currency), with the
currency's own decimals (app/ledger/money.py). Anything not a whole number is shown as it is."""

from __future__ import annotations

from django import template

from app.ledger import money as ledger_money

register = template.Library()


def _shown(value: object, currency: str, formatted) -> str:
    minor = ledger_money.whole(value)
    if minor is None or not currency:
        return "" if value is None else str(value)
    return formatted(minor, currency)


@register.filter
def money(value: object, currency: str) -> str:
    return _shown(value, currency, ledger_money.format_money)


@register.filter
def amount(value: object, currency: str) -> str:
    return _shown(value, currency, ledger_money.format_amount)
