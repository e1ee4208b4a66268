"""Command handlers: load the aggregate, call one method, append at the expected version.

Each handler is a function with keyword-only arguments and a `CommandContext`; none knows
HTTP. Event ids derive from the command id, so a command retried with the same id (an
Idempotency-Key, a redelivered process-manager step) cannot append twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeVar
from uuid import UUID, uuid4, uuid5

from app.ledger.domain import errors
from app.ledger.domain.account import Account
from app.ledger.domain.transfer import Transfer, TransferState
from eventstore.errors import AggregateNotFound, ConcurrencyError, DuplicateEventError
from eventstore.records import NO_STREAM
from eventstore.repository import Repository, StateCache
from eventstore.store import EventStore

CONFLICT_RETRIES = 3
A = TypeVar("A", Account, Transfer)


@dataclass(frozen=True)
class CommandContext:
    """Who sends a command and why: it becomes every event's metadata."""

    actor: str
    command_id: UUID = field(default_factory=uuid4)
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    expected_version: int | None = None  # If-Match: answer a conflict instead of retrying
    request_id: str | None = None

    def metadata(self, command: str) -> dict[str, Any]:
        meta = {
            "command": command,
            "command_id": str(self.command_id),
            "correlation_id": str(self.correlation_id or self.command_id),
            "causation_id": str(self.causation_id or self.command_id),
            "actor": self.actor,
        }
        if self.request_id:
            meta["request_id"] = self.request_id
        return meta

    def event_ids(self, count: int) -> list[UUID]:
        return [uuid5(self.command_id, str(i)) for i in range(count)]


class CommandResult(NamedTuple):
    stream_id: UUID
    version: int
    position: int


class NotFound(Exception):
    def __init__(self, kind: str, id: UUID) -> None:
        super().__init__(f"no {kind} {id}")
        self.kind, self.id = kind, id


def _store() -> EventStore:
    return EventStore()


# The states commands act on, kept between commands in this process (see StateCache).
STATES = StateCache()


def _repo(kind: type[A]) -> Repository[A]:
    return Repository(kind, _store(), cache=STATES)


def _save(repo: Repository, aggregate: Any, ctx: CommandContext, command: str, expected: Any) -> CommandResult:
    result = repo.save(
        aggregate,
        expected_version=expected,
        metadata=ctx.metadata(command),
        event_ids=ctx.event_ids(len(aggregate.pending_events)),
    )
    if result is None:  # nothing changed: answer with where the stream stands
        [last] = repo.store.read_stream(aggregate.id, backwards=True, limit=1)
        return CommandResult(aggregate.id, last.version, last.position)
    return CommandResult(aggregate.id, result.version, result.position)


def _load(repo: Repository[A], stream_id: UUID) -> A:
    try:
        return repo.load(stream_id)
    except AggregateNotFound:
        raise NotFound(repo.type.category, stream_id) from None  # type: ignore[attr-defined]


def _change(
    kind: type[A], stream_id: UUID, ctx: CommandContext, command: str, act: Callable[[A], None]
) -> CommandResult:
    """Load, act, save; on a lost race reload and act again, unless the caller named a version."""
    repo: Repository[A] = _repo(kind)
    for attempt in range(CONFLICT_RETRIES + 1):
        aggregate = _load(repo, stream_id)
        if ctx.expected_version is not None and aggregate.version != ctx.expected_version:
            raise ConcurrencyError(stream_id, ctx.expected_version, aggregate.version)
        act(aggregate)
        try:
            return _save(repo, aggregate, ctx, command, aggregate.version)
        except ConcurrencyError:
            if ctx.expected_version is not None or attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


# -- accounts -----------------------------------------------------------------------------------
def account_open(
    *, account_id: UUID, owner: str, currency: str, overdraft_limit: int = 0, ctx: CommandContext
) -> CommandResult:
    account = Account.open(account_id, owner=owner, currency=currency, overdraft_limit=overdraft_limit)
    return _save(_repo(Account), account, ctx, "OpenAccount", NO_STREAM)


def account_deposit(*, account_id: UUID, amount: int, reference: str = "", ctx: CommandContext) -> CommandResult:
    return _change(Account, account_id, ctx, "Deposit", lambda a: a.deposit(amount, reference))


def account_withdraw(*, account_id: UUID, amount: int, reference: str = "", ctx: CommandContext) -> CommandResult:
    return _change(Account, account_id, ctx, "Withdraw", lambda a: a.withdraw(amount, reference))


def account_freeze(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return _change(Account, account_id, ctx, "FreezeAccount", lambda a: a.freeze(reason))


def account_unfreeze(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return _change(Account, account_id, ctx, "UnfreezeAccount", lambda a: a.unfreeze(reason))


def account_close(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return _change(Account, account_id, ctx, "CloseAccount", lambda a: a.close(reason))


# -- transfers ----------------------------------------------------------------------------------
def transfer_request(
    *, transfer_id: UUID, from_account: UUID, to_account: UUID, amount: int, ctx: CommandContext
) -> CommandResult:
    """Check the request against both accounts now; the process manager completes it later."""
    accounts = _repo(Account)
    states = []
    for account_id in dict.fromkeys((from_account, to_account)):
        try:
            states.append((account_id, accounts.load(account_id).state))
        except AggregateNotFound:
            raise NotFound("account", account_id) from None
    source = states[0]
    target = states[-1] if len(states) > 1 else (to_account, source[1])
    transfer = Transfer.request(transfer_id, source=source, target=target, amount=amount)
    return _save(_repo(Transfer), transfer, ctx, "RequestTransfer", NO_STREAM)


# -- the transfer process manager's steps (app/ledger/process.py) -------------------------------
# Each step gets the context of the event that triggers it (command_id: that event's id) and
# derives the ids of its commands from it, so a redelivered event cannot move money twice: the
# same step appends the same event ids, which the log refuses anywhere else (DuplicateEventError:
# an earlier delivery did it). Each returns the result of what it appended, None when nothing.
def _step(
    kind: type[A], stream_id: UUID, ctx: CommandContext, step: str, command: str, act: Callable[[A], None]
) -> CommandResult | None:
    """Load, act, save with ids derived from the triggering event; on a lost race reload and act again."""
    ctx = replace(ctx, command_id=uuid5(ctx.command_id, step))
    repo: Repository[A] = _repo(kind)
    for attempt in range(CONFLICT_RETRIES + 1):
        aggregate = _load(repo, stream_id)
        act(aggregate)
        if not aggregate.pending_events:
            return None
        try:
            return _save(repo, aggregate, ctx, command, aggregate.version)
        except DuplicateEventError:
            return None
        except ConcurrencyError:
            if attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


def _transfer(transfer_id: UUID) -> TransferState:
    return _load(_repo(Transfer), transfer_id).state


def transfer_debit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Debit the source of a pending transfer; if the source refuses, fail the transfer with its reason."""
    transfer = _transfer(transfer_id)
    if transfer.status != "pending":
        return None
    assert transfer.from_account is not None
    try:
        return _step(
            Account,
            transfer.from_account,
            ctx,
            "debit",
            "DebitForTransfer",
            lambda a: a.debit_for_transfer(transfer_id, transfer.amount),
        )
    except (errors.InsufficientFunds, errors.AccountFrozen, errors.AccountClosed) as refused:
        reason = refused.code
        return _step(Transfer, transfer_id, ctx, "fail", "FailTransfer", lambda t: t.fail(reason))  # type: ignore[arg-type]


def transfer_confirm_debit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The source was debited: confirm it on the transfer. If the transfer failed first (it
    expired), the money goes back instead."""
    confirmed = _step(Transfer, transfer_id, ctx, "confirm_debit", "ConfirmTransferDebit", lambda t: t.confirm_debit())
    return confirmed or transfer_refund(transfer_id=transfer_id, ctx=ctx)


def transfer_credit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Credit the target of a transfer whose debit is confirmed. If the target refuses (it was
    closed meanwhile), fail the transfer, which refunds the source."""
    transfer = _transfer(transfer_id)
    if transfer.status != "pending" or not transfer.debited or transfer.credited:
        return None
    assert transfer.to_account is not None
    try:
        return _step(
            Account,
            transfer.to_account,
            ctx,
            "credit",
            "CreditFromTransfer",
            lambda a: a.credit_from_transfer(transfer_id, transfer.amount),
        )
    except errors.LedgerError as refused:
        if _credited(transfer.to_account, transfer_id):  # by an earlier delivery, before the account closed
            return None
        reason = "account_closed" if isinstance(refused, errors.AccountClosed) else "credit_failed"
        return _step(Transfer, transfer_id, ctx, "fail", "FailTransfer", lambda t: t.fail(reason))


def _credited(account_id: UUID, transfer_id: UUID) -> bool:
    return any(
        e.type == "ledger.TransferCredited" and e.data["transfer_id"] == str(transfer_id)
        for e in _store().read_stream(account_id)
    )


def transfer_complete(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The target was credited: the transfer is complete."""

    def complete(transfer: Transfer) -> None:
        if transfer.state.status == "failed":  # never, by design: park the process manager, loudly
            raise RuntimeError(f"transfer {transfer_id} was credited after it failed")
        transfer.confirm_credit()
        transfer.complete()

    return _step(Transfer, transfer_id, ctx, "complete", "CompleteTransfer", complete)


def transfer_settle(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The transfer completed: its money is no longer in flight on the source."""
    source = _transfer(transfer_id).from_account
    assert source is not None
    return _step(Account, source, ctx, "settle", "SettleTransfer", lambda a: a.settle_transfer(transfer_id))


def transfer_refund(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """A failed transfer's money goes back to the source, if it was debited and not refunded yet
    (the source's in-flight list says so, checked at the version the refund is appended at)."""
    transfer = _transfer(transfer_id)
    if transfer.status != "failed":
        return None
    assert transfer.from_account is not None
    return _step(
        Account,
        transfer.from_account,
        ctx,
        "refund",
        "RefundTransfer",
        lambda a: a.refund_transfer(transfer_id, transfer.amount),
    )


def transfer_confirm_refund(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    return _step(Transfer, transfer_id, ctx, "confirm_refund", "ConfirmTransferRefund", lambda t: t.confirm_refund())


def transfer_expire(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Fail a transfer past its deadline, unless its debit is confirmed (then the credit decides)."""
    return _step(Transfer, transfer_id, ctx, "expire", "ExpireTransfer", lambda t: t.expire())
