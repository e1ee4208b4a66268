"""Ledger events: past tense, persisted contracts. Names and schema versions are
given where they are registered (app/ledger/registry.py).

The event types themselves refuse what the log or the read models cannot hold (text with a NUL
character or an unpaired surrogate, an owner longer than the read model's index takes, a currency
that is not one in use), so every path that appends (the API, the console, seed_demo, the process
manager) is refused the same way: a pydantic ValidationError naming the field, which the command
table answers as 422 `validation_error`. The rules hold for new events only: events read back
from the log are facts and load as they were written (eventstore/inputs.py, `from_history`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from babel.core import get_global
from babel.numbers import get_territory_currencies
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from eventstore.inputs import MAX_BIGINT, from_history, storable

MAX_AMOUNT = MAX_BIGINT
OWNER_MAX = 200  # characters: ledger_account.owner has a B-tree index, whose entries are bounded
TEXT_MAX = 500  # a reference or a reason
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]


def _in_use() -> frozenset[str]:
    """ISO 4217 codes that some territory uses as legal tender today (CLDR, through Babel): not
    the withdrawn ones (DEM), funds and metals (XAU) or codes for tests and no currency (XTS, XXX)."""
    return frozenset(
        code for territory in get_global("territory_currencies") for code in get_territory_currencies(territory)
    )


CURRENCIES = _in_use()


def _currency(code: str, info: ValidationInfo) -> str:
    if code not in CURRENCIES and not from_history(info.context):
        raise ValueError("not the ISO 4217 code of a currency in use, e.g. EUR")
    return code


def _text(longest: int, *, required: bool = False) -> Any:
    """A text field's check: storable, at most `longest` characters, and not blank if required."""

    def check(value: str, info: ValidationInfo) -> str:
        if from_history(info.context):
            return value
        if len(value) > longest:
            raise ValueError(f"at most {longest} characters")
        if required and not value.strip():
            raise ValueError("must not be blank")
        return storable(value)

    return AfterValidator(check)


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Currency = Annotated[CurrencyCode, AfterValidator(_currency)]  # for a new account: one in use today
Owner = Annotated[
    str, _text(OWNER_MAX, required=True), Field(json_schema_extra={"minLength": 1, "maxLength": OWNER_MAX})
]
Text = Annotated[str, _text(TEXT_MAX), Field(json_schema_extra={"maxLength": TEXT_MAX})]
# What stands for a forgotten owner: the marker a reader gets for a value whose key is destroyed
# (eventstore.personal_data.FORGOTTEN), so a state folded before and after the key went agrees.
FORGOTTEN_OWNER = "[forgotten]"
FailureReason = Literal["insufficient_funds", "account_frozen", "account_closed", "expired", "credit_failed"]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- account ------------------------------------------------------------------------------
class AccountOpened(Event):
    owner: Owner  # personal data: stored encrypted
    currency: Currency
    overdraft_limit: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] = 0


Channel = Literal["api", "console", "inbox", "unknown"]


class FundsDeposited(Event):
    """Schema version 2 added `channel`, where the deposit came in; version 1 deposits read as
    "unknown" (the upcaster in app/ledger/registry.py)."""

    amount: Amount
    reference: Text = ""
    channel: Channel = "unknown"


class FundsWithdrawn(Event):
    amount: Amount
    reference: Text = ""


class AccountFrozen(Event):
    reason: Text = ""


class AccountUnfrozen(Event):
    reason: Text = ""


class AccountClosed(Event):
    reason: Text = ""


class AccountOwnerForgotten(Event):
    """The owner was forgotten (the audit record of it): their key is destroyed in the same
    transaction, and from here on the account's state, read models and snapshots hold
    FORGOTTEN_OWNER where the name was."""


class TransferDebited(Event):
    """Money left this account for a transfer (the source side)."""

    transfer_id: UUID
    amount: Amount


class TransferCredited(Event):
    """Money reached this account from a transfer (the target side)."""

    transfer_id: UUID
    amount: Amount


class TransferRefunded(Event):
    """A debited transfer that could not be credited came back to its source."""

    transfer_id: UUID
    amount: Amount


class TransferSettled(Event):
    """The transfer this account was debited for reached its target: no longer in flight."""

    transfer_id: UUID


# -- transfer -----------------------------------------------------------------------------
class TransferRequested(Event):
    from_account: UUID
    to_account: UUID
    amount: Amount
    currency: CurrencyCode  # the accounts' own, whenever they were opened


class TransferDebitConfirmed(Event):
    pass


class TransferCreditConfirmed(Event):
    pass


class TransferCompleted(Event):
    pass


class TransferFailed(Event):
    reason: FailureReason


class TransferRefundConfirmed(Event):
    pass
