"""Command handlers: load the aggregate, call one method, append at the expected version.

Each handler is a function with keyword-only arguments and a `CommandContext`; none knows
HTTP. Event ids derive from the command id, so a command retried with the same id (an
Idempotency-Key, a redelivered process-manager step) cannot append twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from uuid import UUID, uuid4, uuid5

from app.ledger.domain.account import Account
from app.ledger.domain.transfer import Transfer
from eventstore.aggregate import AggregateNotFound, Repository
from eventstore.errors import ConcurrencyError
from eventstore.records import NO_STREAM
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


def _change(
    kind: type[A], stream_id: UUID, ctx: CommandContext, command: str, act: Callable[[A], None]
) -> CommandResult:
    """Load, act, save; on a lost race reload and act again, unless the caller named a version."""
    repo: Repository[A] = Repository(kind, _store())
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            aggregate = repo.load(stream_id)
        except AggregateNotFound:
            raise NotFound(kind.category, stream_id) from None
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
    return _save(Repository(Account, _store()), account, ctx, "OpenAccount", NO_STREAM)


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
    accounts = Repository(Account, _store())
    states = []
    for account_id in dict.fromkeys((from_account, to_account)):
        try:
            states.append((account_id, accounts.load(account_id).state))
        except AggregateNotFound:
            raise NotFound("account", account_id) from None
    source = states[0]
    target = states[-1] if len(states) > 1 else (to_account, source[1])
    transfer = Transfer.request(transfer_id, source=source, target=target, amount=amount)
    return _save(Repository(Transfer, _store()), transfer, ctx, "RequestTransfer", NO_STREAM)
