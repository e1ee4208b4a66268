"""One way in for every ledger command: the REST API and the console both call `send`.

    result = commands.send(handlers.account_deposit, Sender(actor="olga"), account_id=..., amount=500)

`send` refuses while the read models are too far behind (backpressure), builds the command's
context (who sends it, its command id, If-Match, the request id), keeps the result of a command
sent with an Idempotency-Key, and runs the handler. Handlers (app/ledger/handlers.py) go through
`change` (or `create`), the one load-act-save loop, which retries a lost race; the process
manager's steps go through it too (`step`), with ids derived from the event that triggers them.

Event ids derive from the command id, so a command sent again cannot append twice: its events
are found in the log and their result is answered again ("repeated").

`refusal(exc)` is the one table from the errors a command can meet to the contract's answer
(status, code, detail); the API's error handler and the console's inline refusals both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, TypeVar
from uuid import UUID, uuid4, uuid5

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError
from pydantic import ValidationError

from app.core import idempotency
from app.ledger.domain.errors import LedgerError
from eventstore.aggregate import AggregateLike
from eventstore.contract import Store
from eventstore.errors import (
    AggregateNotFound,
    ConcurrencyError,
    DuplicateEventError,
    InvalidEventData,
    SubjectForgotten,
    UnknownEventType,
)
from eventstore.records import NO_STREAM, ExpectedVersion
from eventstore.repository import Repository, StateCache
from eventstore.store import EventStore
from projections import backpressure

CONFLICT_RETRIES = 3
A = TypeVar("A", bound=AggregateLike)
Outcome = Literal["appended", "unchanged", "repeated"]


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
    """Where the command left its stream. `outcome`: "appended" its events, "unchanged" (there was
    nothing to do), or "repeated" (the same command was done before: its result)."""

    stream_id: UUID
    version: int
    position: int
    outcome: Outcome = "appended"


class NotFound(Exception):
    def __init__(self, kind: str, id: UUID) -> None:
        super().__init__(f"no {kind} {id}")
        self.kind, self.id = kind, id


class Backpressure(Exception):
    """The read models are too far behind: a command now would only grow the backlog."""

    def __init__(self) -> None:
        super().__init__(f"the read models are more than {settings.BACKPRESSURE_MAX_LAG} events behind: retry shortly")


# -- sending ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sender:
    """Who sends a command from the outside, and how: the API or the console fills this in."""

    actor: str
    user_id: int | None = None
    command_id: UUID | None = None  # a console form's own id; else one from the Idempotency-Key, else new
    idempotency_key: str | None = None
    fingerprint: str = ""  # what the Idempotency-Key was sent with
    expected_version: int | None = None  # If-Match
    request_id: str | None = None


def send(handler: Callable[..., CommandResult], sender: Sender, **arguments: Any) -> CommandResult:
    """Run one command for a user: refused while the read models are too far behind; with an
    Idempotency-Key, the first result of the same request is answered again."""
    if backpressure.too_far_behind():
        raise Backpressure()
    key = sender.idempotency_key
    command_id = sender.command_id
    if command_id is None:
        if key is not None and sender.user_id is not None:
            command_id = idempotency.command_id(sender.user_id, key, sender.fingerprint)
        else:
            command_id = uuid4()
    ctx = CommandContext(
        actor=sender.actor,
        command_id=command_id,
        expected_version=sender.expected_version,
        request_id=sender.request_id,
    )
    if key is None:
        return handler(ctx=ctx, **arguments)
    if sender.user_id is None:
        raise ValueError("an Idempotency-Key belongs to a user: the sender needs a user_id")
    return idempotency.run(
        sender.user_id, key, sender.fingerprint, lambda: handler(ctx=ctx, **arguments), keep=_kept, restore=_restored
    )


def _kept(result: CommandResult) -> Mapping[str, Any]:
    return {"stream_id": str(result.stream_id), "version": result.version, "position": result.position}


def _restored(kept: Mapping[str, Any]) -> CommandResult:
    return CommandResult(UUID(kept["stream_id"]), kept["version"], kept["position"], "repeated")


# -- the store commands act on ----------------------------------------------------------------
# The states commands act on, kept between commands in this process (see StateCache).
STATES = StateCache()
_store: ContextVar[tuple[Store, StateCache] | None] = ContextVar("ledger_store", default=None)


@contextmanager
def using(store: Store) -> Iterator[None]:
    """Run commands against another event store (an in-memory one in unit tests), with a state
    cache of its own."""
    token = _store.set((store, StateCache()))
    try:
        yield
    finally:
        _store.reset(token)


def store() -> Store:
    chosen = _store.get()
    return EventStore() if chosen is None else chosen[0]


def repository(kind: type[A]) -> Repository[A]:
    chosen = _store.get()
    if chosen is None:
        return Repository(kind, EventStore(), cache=STATES)
    return Repository(kind, chosen[0], cache=chosen[1])


def load(kind: type[A], stream_id: UUID) -> A:
    """The aggregate as it stands now; NotFound if the stream does not exist."""
    return _load(repository(kind), stream_id)


def _load(repo: Repository[A], stream_id: UUID) -> A:
    try:
        return repo.load(stream_id)
    except AggregateNotFound:
        raise NotFound(repo.type.category, stream_id) from None


# -- the one load-act-save loop -----------------------------------------------------------------
def create(aggregate: AggregateLike, ctx: CommandContext, command: str) -> CommandResult:
    """Append a new aggregate's first events (the stream must not exist yet)."""
    return _save(repository(type(aggregate)), aggregate, ctx, command, NO_STREAM)


def change(
    kind: type[A], stream_id: UUID, ctx: CommandContext, command: str, act: Callable[[A], None]
) -> CommandResult:
    """Load, act, append what the act recorded at the version loaded. A lost race reloads and acts
    again (at most CONFLICT_RETRIES times), unless the sender named the version (If-Match)."""
    repo = repository(kind)
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


def step(
    kind: type[A], stream_id: UUID, ctx: CommandContext, name: str, command: str, act: Callable[[A], None]
) -> CommandResult | None:
    """A process manager's step: `change`, with ids derived from the triggering event (the
    context's command id) and the step's name, so a redelivered event appends nothing twice.
    None when it appended nothing (nothing to do, or an earlier delivery did it)."""
    try:
        result = change(kind, stream_id, replace(ctx, command_id=uuid5(ctx.command_id, name)), command, act)
    except DuplicateEventError:
        return None
    return result if result.outcome == "appended" else None


def _save(
    repo: Repository[A], aggregate: A, ctx: CommandContext, command: str, expected: ExpectedVersion
) -> CommandResult:
    ids = ctx.event_ids(len(aggregate.pending_events))
    try:
        result = repo.save(aggregate, expected_version=expected, metadata=ctx.metadata(command), event_ids=ids)
    except DuplicateEventError:
        return _original(repo.store, aggregate.id, ids)
    if result is None:  # nothing changed: answer with where the stream stands
        [last] = repo.store.read_stream(aggregate.id, backwards=True, limit=1)
        return CommandResult(aggregate.id, last.version, last.position, "unchanged")
    return CommandResult(aggregate.id, result.version, result.position)


def _original(store: Store, stream_id: UUID, ids: list[UUID]) -> CommandResult:
    """The result of the earlier command whose events have these ids (the same command sent again)."""
    wanted = set(ids)
    for event in store.read_stream(stream_id, backwards=True):
        if event.event_id in wanted:
            return CommandResult(stream_id, event.version, event.position, "repeated")
    raise DuplicateEventError(f"the events of this command are in the log, but not on stream {stream_id}")


# -- refusals: the contract's answer to each error a command can meet ---------------------------
@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    detail: str
    fields: dict[str, list[str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more members of the error body


def validation_fields(errors: list[dict[str, Any]]) -> dict[str, list[str]]:
    """pydantic's errors as the contract's `fields`: {"path.to.field": [messages]}."""
    found: dict[str, list[str]] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "payload", "query", "path")]
        found.setdefault(".".join(loc) or "(body)", []).append(e.get("msg", "invalid"))
    return found


def _conflict(exc: ConcurrencyError) -> Refusal:
    return Refusal(
        409,
        "concurrency_conflict",
        f"the stream is at version {exc.actual}: it changed meanwhile",
        headers={"ETag": f'"{exc.actual}"'},
        extra={"version": exc.actual},
    )


def _unavailable(exc: Exception) -> Refusal:
    retry = str(settings.BACKPRESSURE_RETRY_AFTER_S)
    return Refusal(503, "unavailable", "the database cannot be reached: retry shortly", headers={"Retry-After": retry})


REFUSALS: dict[type[Exception], Callable[[Any], Refusal]] = {
    LedgerError: lambda e: Refusal(422, e.code, e.detail),
    NotFound: lambda e: Refusal(404, "not_found", str(e)),
    AggregateNotFound: lambda e: Refusal(404, "not_found", str(e)),
    UnknownEventType: lambda e: Refusal(404, "not_found", str(e)),
    InvalidEventData: lambda e: Refusal(422, "validation_error", str(e), fields=validation_fields(e.errors)),
    ValidationError: lambda e: Refusal(
        422, "validation_error", "some fields are invalid", fields=validation_fields(e.errors())
    ),
    idempotency.InvalidKey: lambda e: Refusal(
        422, "validation_error", str(e), fields={"Idempotency-Key": ["invalid length"]}
    ),
    ConcurrencyError: _conflict,
    idempotency.KeyReused: lambda e: Refusal(409, "idempotency_key_reused", str(e)),
    DuplicateEventError: lambda e: Refusal(
        409, "idempotency_key_reused", "this command's id was used before for another command"
    ),
    SubjectForgotten: lambda e: Refusal(422, "subject_forgotten", "this account's owner was forgotten"),
    Backpressure: lambda e: Refusal(
        503, "backpressure", str(e), headers={"Retry-After": str(settings.BACKPRESSURE_RETRY_AFTER_S)}
    ),
    OperationalError: _unavailable,
    InterfaceError: _unavailable,
    # the same, met on the event store's own psycopg cursors and libpq path (Django does not wrap them)
    psycopg.OperationalError: _unavailable,
    psycopg.InterfaceError: _unavailable,
}
REFUSABLE: tuple[type[Exception], ...] = tuple(REFUSALS)


# Every code the table answers with, and its status (a business rule's code is its error's).
def _business_rules(cls: type[LedgerError]) -> dict[str, int]:
    return {code: 422 for sub in cls.__subclasses__() for code in (sub.code, *_business_rules(sub))}


CODES: dict[str, int] = {
    **_business_rules(LedgerError),
    "not_found": 404,
    "validation_error": 422,
    "concurrency_conflict": 409,
    "idempotency_key_reused": 409,
    "subject_forgotten": 422,
    "backpressure": 503,
    "unavailable": 503,
}


def refusal(exc: BaseException) -> Refusal | None:
    """The contract's answer to `exc`, or None for an error no command should meet (a bug)."""
    for kind in type(exc).__mro__:
        if kind in REFUSALS:
            return REFUSALS[kind](exc)
    return None
