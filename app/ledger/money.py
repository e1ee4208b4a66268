"""Money as people read and type it, and as the ledger keeps it.

The API and the events keep amounts as integers in the currency's minor units (cents for EUR, yen
for JPY, fils for BHD); people read and type decimals. `format_money` turns the one into the
other with the currency's own number of decimals (CLDR, through Babel) and thousands separators;
`parse_amount` turns typed text back, exactly (decimal.Decimal, never a float), and refuses what
it cannot convert exactly with a sentence a form can show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Any

from babel.numbers import format_decimal, get_currency_precision

from app.ledger.domain.events import MAX_AMOUNT

# ASCII digits only (no Arabic-Indic or full-width ones), an optional group of thousands separated by commas, an
# optional fraction after a point; no sign, no exponent, no spaces inside.
AMOUNT_TEXT = re.compile(r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<fraction>[0-9]+))?", re.ASCII)
TEXT_MAX = 64  # characters: far more than the largest amount with separators and decimals
MAX_DIGITS = 100  # more than any amount or balance has (a balance is numeric(40))


def decimals(currency: str) -> int:
    """How many decimals the currency's amounts have: EUR 2, JPY 0, BHD 3 (2 for a code CLDR
    does not know, as for an account opened in a currency withdrawn since)."""
    return get_currency_precision(currency)


def format_amount(minor_units: int | Decimal, currency: str, locale: str = "en") -> str:
    """131066 EUR -> "1,310.66": the number only, with the currency's decimals. A whole Decimal
    (a balance: the read models sum into numeric, which cannot overflow) is as good as an int."""
    places = decimals(currency)
    pattern = "#,##0" + ("." + "0" * places if places else "")
    with localcontext(prec=MAX_DIGITS):  # exact: no rounding to the default 28 digits
        return format_decimal(Decimal(minor_units).scaleb(-places), format=pattern, locale=locale)


def format_money(minor_units: int | Decimal, currency: str, locale: str = "en") -> str:
    """131066 EUR -> "1,310.66 EUR"; 1310 JPY -> "1,310 JPY"; -5 EUR -> "-0.05 EUR"."""
    return f"{format_amount(minor_units, currency, locale)} {currency}"


def parse_amount(text: str, currency: str, *, minimum: int = 1, maximum: int = MAX_AMOUNT) -> int:
    """ "10.50" EUR -> 1050, "1,310" JPY -> 1310: typed text as minor units, exactly. ValueError
    with a sentence for a form when the text is not a plain decimal number, has more decimals than
    the currency, or is outside [minimum, maximum] minor units."""
    text = text.strip()
    if not text:
        raise ValueError("Enter an amount, e.g. 10.50.")
    if text.startswith("-"):
        raise ValueError("Enter an amount without a sign: a positive number." if minimum > 0 else "Enter no sign.")
    found = AMOUNT_TEXT.fullmatch(text) if len(text) <= TEXT_MAX else None
    if found is None:
        raise ValueError("Enter a plain decimal amount in digits 0-9 with a point for decimals, e.g. 1,310.66.")
    places = decimals(currency)
    fraction = found["fraction"] or ""
    if len(fraction.rstrip("0")) > places:
        raise ValueError(
            f"{currency} has no decimals: enter a whole number."
            if places == 0
            else f"{currency} has {places} decimals: enter at most {places} digits after the point."
        )
    with localcontext(prec=MAX_DIGITS):  # more digits than any text accepted has: exact
        minor = int(Decimal(found["whole"].replace(",", "") + "." + (fraction or "0")).scaleb(places))
    if minor < minimum:
        smallest = format_money(minimum, currency)
        raise ValueError("Enter an amount above zero." if minimum == 1 else f"Enter at least {smallest}.")
    if minor > maximum:
        raise ValueError(f"Enter at most {format_money(maximum, currency)}.")
    return minor


# The ledger's fields, in its events and its aggregates' states, that hold amounts in minor units.
MONEY_FIELDS = ("amount", "balance", "overdraft_limit", "balance_after")


def amounts_in(data: Mapping[str, Any], currency: str | None) -> dict[str, str]:
    """The amounts among an event's data or a state's fields, as money: {"amount": "10.50 EUR"}
    (nothing without a currency)."""
    if not currency:
        return {}
    return {
        name: format_money(value, currency) for name in MONEY_FIELDS if (value := whole(data.get(name))) is not None
    }


def whole(value: object) -> int | Decimal | None:
    """`value` if it is a number of minor units (an int, or a whole Decimal), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return value
    return value if isinstance(value, int) else None
