"""The transfer aggregate: money moving from one account to another, driven to its end
by the transfer process manager."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.ledger.domain import errors
from app.ledger.domain.account import AccountState
from app.ledger.domain.events import (
    FailureReason,
    TransferCompleted,
    TransferCreditConfirmed,
    TransferDebitConfirmed,
    TransferFailed,
    TransferRefundConfirmed,
    TransferRequested,
)
from eventstore.aggregate import Aggregate


class TransferState(BaseModel):
    model_config = ConfigDict(frozen=True)

    from_account: UUID | None = None
    to_account: UUID | None = None
    amount: int = 0
    currency: str = ""
    status: Literal["pending", "completed", "failed"] = "pending"
    debited: bool = False
    credited: bool = False
    refunded: bool = False
    reason: FailureReason | None = None


class Transfer(Aggregate[TransferState]):
    category = "transfer"

    @classmethod
    def initial_state(cls) -> TransferState:
        return TransferState()

    @staticmethod
    def evolve(state: TransferState, event: BaseModel) -> TransferState:
        match event:
            case TransferRequested(from_account=src, to_account=dst, amount=amount, currency=currency):
                return state.model_copy(
                    update={"from_account": src, "to_account": dst, "amount": amount, "currency": currency}
                )
            case TransferDebitConfirmed():
                return state.model_copy(update={"debited": True})
            case TransferCreditConfirmed():
                return state.model_copy(update={"credited": True})
            case TransferRefundConfirmed():
                return state.model_copy(update={"refunded": True})
            case TransferCompleted():
                return state.model_copy(update={"status": "completed"})
            case TransferFailed(reason=reason):
                return state.model_copy(update={"status": "failed", "reason": reason})
        return state

    @classmethod
    def request(
        cls, id: UUID, *, source: tuple[UUID, AccountState], target: tuple[UUID, AccountState], amount: int
    ) -> Transfer:
        """Check what can be checked at once (docs/api.md) and record the request."""
        (source_id, source_state), (target_id, target_state) = source, target
        if source_id == target_id:
            raise errors.SameAccount("a transfer needs two different accounts")
        if source_state.currency != target_state.currency:
            raise errors.CurrencyMismatch(
                f"the source holds {source_state.currency}, the target {target_state.currency}"
            )
        for name, state in (("source", source_state), ("target", target_state)):
            if state.status == "closed":
                raise errors.AccountClosed(f"the {name} account is closed")
        transfer = cls(id)
        transfer.record(
            TransferRequested(
                from_account=source_id, to_account=target_id, amount=amount, currency=source_state.currency
            )
        )
        return transfer

    def confirm_debit(self) -> None:
        if not self.state.debited and self.state.status == "pending":
            self.record(TransferDebitConfirmed())

    def confirm_credit(self) -> None:
        if not self.state.credited and self.state.status == "pending":
            self.record(TransferCreditConfirmed())

    def complete(self) -> None:
        if self.state.status == "pending":
            self.record(TransferCompleted())

    def fail(self, reason: FailureReason) -> None:
        if self.state.status == "pending":
            self.record(TransferFailed(reason=reason))

    def expire(self) -> None:
        """Past its deadline: fail, unless the debit is confirmed (from then on the credit decides:
        completed, or failed and refunded)."""
        if not self.state.debited:
            self.fail("expired")

    def confirm_refund(self) -> None:
        if self.state.debited and not self.state.refunded:
            self.record(TransferRefundConfirmed())
