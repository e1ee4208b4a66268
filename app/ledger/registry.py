"""The ledger's event catalog: stable names and schema versions for the domain's events.
The domain knows only the Django-free Aggregate base; this module registers its events and
aggregates with the event store."""

from app.ledger.domain import events as e
from app.ledger.domain.account import Account
from app.ledger.domain.transfer import Transfer
from eventstore.aggregate import register_aggregate
from eventstore.registry import registry

register_aggregate(Account)
register_aggregate(Transfer)

registry.register("ledger.AccountOpened", 1, personal_data=("owner",))(e.AccountOpened)
for model in (
    e.FundsDeposited,
    e.FundsWithdrawn,
    e.AccountFrozen,
    e.AccountUnfrozen,
    e.AccountClosed,
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
