"""Ledger events: past tense, persisted contracts. Names and schema versions are
given where they are registered (app/ledger/registry.py)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

MAX_AMOUNT = 2**63 - 1
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
FailureReason = Literal["insufficient_funds", "account_frozen", "account_closed", "expired", "credit_failed"]


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- account ------------------------------------------------------------------------------
class AccountOpened(Event):
    owner: str  # personal data: stored encrypted
    currency: Currency
    overdraft_limit: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] = 0


class FundsDeposited(Event):
    amount: Amount
    reference: str = ""


class FundsWithdrawn(Event):
    amount: Amount
    reference: str = ""


class AccountFrozen(Event):
    reason: str = ""


class AccountUnfrozen(Event):
    reason: str = ""


class AccountClosed(Event):
    reason: str = ""


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
    currency: Currency


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
