"""The ledger's event catalog: stable names and schema versions for the domain's events.
The domain knows only the Django-free Aggregate base; this module registers its events and
aggregates with the event store."""

from typing import Any

from app.ledger.domain import events as e
from app.ledger.domain.account import Account
from app.ledger.domain.transfer import Transfer
from eventstore.aggregate import register_aggregate
from eventstore.registry import registry, upcaster

register_aggregate(Account)
register_aggregate(Transfer)

registry.register("ledger.AccountOpened", 1, personal_data=("owner",))(e.AccountOpened)
registry.register("ledger.FundsDeposited", 2)(e.FundsDeposited)
for model in (
    e.FundsWithdrawn,
    e.AccountFrozen,
    e.AccountUnfrozen,
    e.AccountClosed,
    e.AccountOwnerForgotten,
    e.TransferDebited,
    e.TransferCredited,
    e.TransferRefunded,
    e.TransferSettled,
    e.TransferRequested,
    e.TransferDebitConfirmed,
    e.TransferCreditConfirmed,
    e.TransferCompleted,
    e.TransferFailed,
    e.TransferRefundConfirmed,
):
    registry.register(f"ledger.{model.__name__}", 1)(model)


@upcaster("ledger.FundsDeposited", from_version=1)
def _deposit_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Deposits stored before schema version 2 do not say where they came in."""
    return {**data, "channel": "unknown"}
