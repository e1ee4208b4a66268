"""The account aggregate: a balance with an owner, a currency and an overdraft limit."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.ledger.domain import errors
from app.ledger.domain.events import (
    FORGOTTEN_OWNER,
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountOwnerForgotten,
    AccountUnfrozen,
    Channel,
    FundsDeposited,
    FundsWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSettled,
)
from eventstore.aggregate import Aggregate

Status = Literal["open", "frozen", "closed"]


class AccountState(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str = ""
    currency: str = ""
    overdraft_limit: int = 0
    balance: int = 0
    status: Status = "open"
    in_flight: tuple[UUID, ...] = ()  # outgoing transfers debited and not yet settled or refunded
    forgotten: bool = False  # the owner was forgotten (AccountOwnerForgotten)


class Account(Aggregate[AccountState]):
    category = "account"

    @classmethod
    def initial_state(cls) -> AccountState:
        return AccountState()

    @staticmethod
    def evolve(state: AccountState, event: BaseModel) -> AccountState:
        match event:
            case AccountOpened(owner=owner, currency=currency, overdraft_limit=limit):
                return state.model_copy(update={"owner": owner, "currency": currency, "overdraft_limit": limit})
            case FundsDeposited(amount=amount) | TransferCredited(amount=amount):
                return state.model_copy(update={"balance": state.balance + amount})
            case FundsWithdrawn(amount=amount):
                return state.model_copy(update={"balance": state.balance - amount})
            case TransferDebited(transfer_id=tid, amount=amount):
                return state.model_copy(
                    update={"balance": state.balance - amount, "in_flight": (*state.in_flight, tid)}
                )
            case TransferRefunded(transfer_id=tid, amount=amount):
                rest = tuple(t for t in state.in_flight if t != tid)
                return state.model_copy(update={"balance": state.balance + amount, "in_flight": rest})
            case TransferSettled(transfer_id=tid):
                return state.model_copy(update={"in_flight": tuple(t for t in state.in_flight if t != tid)})
            case AccountFrozen():
                return state.model_copy(update={"status": "frozen"})
            case AccountUnfrozen():
                return state.model_copy(update={"status": "open"})
            case AccountClosed():
                return state.model_copy(update={"status": "closed"})
            case AccountOwnerForgotten():
                return state.model_copy(update={"owner": FORGOTTEN_OWNER, "forgotten": True})
        return state

    # -- commands ---------------------------------------------------------------------------
    @classmethod
    def open(cls, id: UUID, *, owner: str, currency: str, overdraft_limit: int = 0) -> Account:
        account = cls(id)
        account.record(AccountOpened(owner=owner, currency=currency, overdraft_limit=overdraft_limit))
        return account

    def deposit(
        self, amount: int, reference: str = "", channel: Channel = "unknown", currency: str | None = None
    ) -> None:
        """`currency`: the deposit's, when the sender names one; it must be the account's."""
        self._check_not_closed()
        if currency is not None and currency != self.state.currency:
            raise errors.CurrencyMismatch(f"the account holds {self.state.currency}, not {currency}")
        self.record(FundsDeposited(amount=amount, reference=reference, channel=channel))

    def withdraw(self, amount: int, reference: str = "") -> None:
        self._check_not_closed()
        self._check_not_frozen()
        self._check_funds(amount)
        self.record(FundsWithdrawn(amount=amount, reference=reference))

    def freeze(self, reason: str = "") -> None:
        self._check_not_closed()
        if self.state.status != "frozen":  # freezing a frozen account changes nothing
            self.record(AccountFrozen(reason=reason))

    def unfreeze(self, reason: str = "") -> None:
        self._check_not_closed()
        if self.state.status == "frozen":
            self.record(AccountUnfrozen(reason=reason))

    def close(self, reason: str = "") -> None:
        self._check_not_closed()
        if self.state.in_flight:
            raise errors.TransfersPending(f"{len(self.state.in_flight)} outgoing transfer(s) are still in flight")
        if self.state.balance != 0:
            raise errors.BalanceNotZero("the balance is {balance}, not zero", balance=self.state.balance)
        self.record(AccountClosed(reason=reason))

    def forget_owner(self) -> None:
        """Forget the owner, whatever the account's status (a closed account's owner too); once is
        enough: forgetting again records nothing."""
        if not self.state.forgotten:
            self.record(AccountOwnerForgotten())

    def debit_for_transfer(self, transfer_id: UUID, amount: int) -> None:
        if transfer_id in self.state.in_flight:
            return
        self._check_not_closed()
        self._check_not_frozen()
        self._check_funds(amount)
        self.record(TransferDebited(transfer_id=transfer_id, amount=amount))

    def credit_from_transfer(self, transfer_id: UUID, amount: int) -> None:
        self._check_not_closed()  # frozen accounts still take incoming transfers
        self.record(TransferCredited(transfer_id=transfer_id, amount=amount))

    def refund_transfer(self, transfer_id: UUID, amount: int) -> None:
        if transfer_id in self.state.in_flight:
            self.record(TransferRefunded(transfer_id=transfer_id, amount=amount))

    def settle_transfer(self, transfer_id: UUID) -> None:
        if transfer_id in self.state.in_flight:
            self.record(TransferSettled(transfer_id=transfer_id))

    # -- guards -------------------------------------------------------------------------------
    def _check_not_closed(self) -> None:
        if self.state.status == "closed":
            raise errors.AccountClosed("the account is closed")

    def _check_not_frozen(self) -> None:
        if self.state.status == "frozen":
            raise errors.AccountFrozen("the account is frozen")

    def _check_funds(self, amount: int) -> None:
        if self.state.balance - amount < -self.state.overdraft_limit:
            raise errors.InsufficientFunds(
                "withdrawing {amount} would take the balance of {balance} below the overdraft limit of {limit}",
                amount=amount,
                balance=self.state.balance,
                limit=self.state.overdraft_limit,
            )
