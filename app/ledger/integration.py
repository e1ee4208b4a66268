"""The ledger's integration events: what other services may read about accounts and transfers,
and the translations from the ledger's domain events (registered from LedgerConfig.ready).

The bodies hold ids, amounts in integer minor units, currencies and outcomes, never personal
data: the owner's name is not published (it is encrypted in the log and can be forgotten; a
message, once sent, cannot be). Where the domain event does not carry the currency (a deposit,
a withdrawal, a transfer's outcome), the translation reads it from the stream's first event
(the account's AccountOpened, the transfer's TransferRequested), which never changes: the same
event always translates to the same body, however late or often it is published.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from app.integration.events import IntegrationBody, integration_event, translates
from eventstore.contract import Store
from eventstore.records import RecordedEvent

Currency = str
MinorUnits = int
FailureReason = Literal["insufficient_funds", "account_frozen", "account_closed", "expired", "credit_failed"]


# -- the public schemas ---------------------------------------------------------------------
@integration_event("ledger.account_opened", version=1)
class AccountOpenedV1(IntegrationBody):
    account_id: UUID
    currency: Currency = Field(pattern=r"^[A-Z]{3}$")


@integration_event("ledger.funds_deposited", version=1)
class FundsDepositedV1(IntegrationBody):
    account_id: UUID
    amount: MinorUnits = Field(gt=0, description="in the currency's minor units (cents for EUR)")
    currency: Currency = Field(pattern=r"^[A-Z]{3}$")


@integration_event("ledger.funds_withdrawn", version=1)
class FundsWithdrawnV1(IntegrationBody):
    account_id: UUID
    amount: MinorUnits = Field(gt=0, description="in the currency's minor units (cents for EUR)")
    currency: Currency = Field(pattern=r"^[A-Z]{3}$")


class TransferOutcome(IntegrationBody):
    transfer_id: UUID
    from_account_id: UUID
    to_account_id: UUID
    amount: MinorUnits = Field(gt=0, description="in the currency's minor units (cents for EUR)")
    currency: Currency = Field(pattern=r"^[A-Z]{3}$")


@integration_event("ledger.transfer_completed", version=1)
class TransferCompletedV1(TransferOutcome):
    """The money reached the target account."""


@integration_event("ledger.transfer_failed", version=1)
class TransferFailedV1(TransferOutcome):
    """The transfer ended without moving money (a debited source is refunded)."""

    reason: FailureReason


# -- the translations -----------------------------------------------------------------------
# What the publisher needs of a stream's first event, by stream: it never changes, so a process
# keeps the most recent ones (never an owner's name: forgetting must leave nothing behind).
_OPENINGS: OrderedDict[UUID, dict[str, Any]] = OrderedDict()
OPENINGS_KEPT = 10_000
NOT_PERSONAL = ("currency", "from_account", "to_account", "amount")


class NoOpening(LookupError):
    """The event's stream does not start with what its integration event needs (a stream written
    without its opening event, by hand or by an import): the publisher parks there, and its
    parked error (redacted: the type, not the message) names this class."""


def _opening(event: RecordedEvent, store: Store, *needed: str) -> dict[str, Any]:
    """The first event's data of the event's stream (an account's AccountOpened, a transfer's
    request), but for personal data; NoOpening unless it holds every `needed` field."""
    found = _OPENINGS.get(event.stream_id)
    if found is None:
        first = store.read_stream(event.stream_id, limit=1)
        missing = [name for name in needed if not first or name not in first[0].data]
        if missing:
            opens = f"starts with {first[0].type} (version {first[0].version})" if first else "has no event to read"
            raise NoOpening(
                f"{event.type} at position {event.position}: its stream {event.stream_id} {opens}, "
                f"which does not carry {', '.join(missing)}: no integration event can be made of it"
            )
        return _remember(first[0])
    _OPENINGS.move_to_end(event.stream_id)
    return found


def _remember(first: RecordedEvent) -> dict[str, Any]:
    """Keeps what the translations need of a stream's first event (never personal data)."""
    kept = _OPENINGS[first.stream_id] = {k: v for k, v in first.data.items() if k in NOT_PERSONAL}
    if len(_OPENINGS) > OPENINGS_KEPT:
        _OPENINGS.popitem(last=False)
    return kept


def _common(event: RecordedEvent) -> dict[str, object]:
    return {"event_id": event.event_id, "occurred_at": event.recorded_at}


@translates("ledger.AccountOpened")
def account_opened(event: RecordedEvent, store: Store) -> AccountOpenedV1:
    _remember(event)  # the deposits and withdrawals that follow it then read nothing
    return AccountOpenedV1.model_validate(
        {**_common(event), "account_id": event.stream_id, "currency": event.data["currency"]}
    )


def _movement(event: RecordedEvent, store: Store) -> dict[str, object]:
    """A deposit's or a withdrawal's body: the currency is the account's, from its opening."""
    currency = _opening(event, store, "currency")["currency"]
    return {**_common(event), "account_id": event.stream_id, "amount": event.data["amount"], "currency": currency}


@translates("ledger.FundsDeposited")
def funds_deposited(event: RecordedEvent, store: Store) -> FundsDepositedV1:
    return FundsDepositedV1.model_validate(_movement(event, store))


@translates("ledger.FundsWithdrawn")
def funds_withdrawn(event: RecordedEvent, store: Store) -> FundsWithdrawnV1:
    return FundsWithdrawnV1.model_validate(_movement(event, store))


def _outcome(event: RecordedEvent, store: Store) -> dict[str, object]:
    """A transfer outcome's body: the accounts, amount and currency are the request's."""
    request = _opening(event, store, "from_account", "to_account", "amount", "currency")
    return {
        **_common(event),
        "transfer_id": event.stream_id,
        "from_account_id": request["from_account"],
        "to_account_id": request["to_account"],
        "amount": request["amount"],
        "currency": request["currency"],
    }


@translates("ledger.TransferCompleted")
def transfer_completed(event: RecordedEvent, store: Store) -> TransferCompletedV1:
    return TransferCompletedV1.model_validate(_outcome(event, store))


@translates("ledger.TransferFailed")
def transfer_failed(event: RecordedEvent, store: Store) -> TransferFailedV1:
    return TransferFailedV1.model_validate({**_outcome(event, store), "reason": event.data["reason"]})
