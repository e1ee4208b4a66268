"""One way in for every ledger command: the REST API and the console both call `send`.

    result = commands.send(handlers.account_deposit, Sender(actor="olga"), account_id=..., amount=500)

`send` refuses while the read models are too far behind (backpressure), builds the command's
context (who sends it, its command id, If-Match, the request id), keeps the result of a command
sent with an Idempotency-Key, and runs the handler. Handlers (app/ledger/handlers.py) go through
`change` (or `create`), the one load-act-save loop, which retries a lost race (a keyed command, which
runs in a transaction, is run again whole, in a new one: see LostRaceInTransaction); the process
manager's steps go through it too (`step`), with ids derived from the event that triggers them.

Event ids derive from the command id, so a command sent again cannot append twice: its events
are found in the log and their result is answered again ("repeated").

`refusal(exc)` is the one table from the errors a command can meet to the contract's answer
(status, code, detail); the API's error handler and the console's inline refusals both use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, TypeVar
from uuid import UUID, uuid4, uuid5

import psycopg
import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, transaction
from pydantic import ValidationError

from app.core import command_rate, idempotency, logs, metrics
from app.ledger.domain.errors import LedgerError
from eventstore import tracing
from eventstore.aggregate import AggregateLike
from eventstore.contract import Store
from eventstore.errors import (
    AggregateNotFound,
    ConcurrencyError,
    DuplicateEventError,
    InvalidEventData,
    StreamTombstoned,
    SubjectForgotten,
    UnknownEventType,
)
from eventstore.records import NO_STREAM, ExpectedVersion
from eventstore.repository import Repository, StateCache
from eventstore.store import EventStore
from projections import backpressure

log = structlog.get_logger(__name__)
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


class LostRaceInTransaction(Exception):
    """A command inside a transaction (one sent with an Idempotency-Key) lost the race for its
    stream. It must not try again in that transaction: the failed append gave the transaction its
    id, older than the winner's, and an event appended later under that id would be read before the
    winner's (the log's read order is by transaction id first), so a projection would see the
    stream's versions out of order and skip one (the soak found a debit lost from a balance so).
    The whole command runs again in a new transaction (`send`)."""

    def __init__(self, conflict: ConcurrencyError) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict


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
    Idempotency-Key, the first result of the same request is answered again. Counted by name
    and outcome (app.core.metrics, and per slot for the dashboard: app.core.command_rate)."""
    started = time.perf_counter()
    try:
        result = _send(handler, sender, **arguments)
    except Exception as exc:
        _counted(handler.__name__, exc, time.perf_counter() - started)
        raise
    _counted(handler.__name__, None, time.perf_counter() - started)
    return result


def _counted(command: str, exc: Exception | None, seconds: float) -> None:
    """ok, the error code of a refusal (the contract's), or "error" for what has none (a 500)."""
    answer = refusal(exc) if exc is not None else None
    outcome = "ok" if exc is None else answer.code if answer is not None else "error"
    metrics.COMMANDS.labels(command, outcome).inc()
    metrics.COMMAND_SECONDS.labels(command).observe(seconds)
    status = 200 if exc is None else answer.status if answer is not None else 500
    command_rate.count("ok" if status < 400 else "refused" if status < 500 else "error")


def _send(handler: Callable[..., CommandResult], sender: Sender, **arguments: Any) -> CommandResult:
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
        correlation_id=logs.correlation_id(),  # the request's, which its log lines carry
        expected_version=sender.expected_version,
        request_id=sender.request_id,
    )
    if key is None:
        return handler(ctx=ctx, **arguments)
    if sender.user_id is None:
        raise ValueError("an Idempotency-Key belongs to a user: the sender needs a user_id")
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            return idempotency.run(
                sender.user_id,
                key,
                sender.fingerprint,
                lambda: handler(ctx=ctx, **arguments),
                keep=_kept,
                restore=_restored,
            )
        except LostRaceInTransaction as lost:  # rolled back whole: run it again in a new transaction
            if attempt == CONFLICT_RETRIES:
                raise lost.conflict from None
    raise AssertionError("unreachable")


def _kept(result: CommandResult) -> Mapping[str, Any]:
    return {"stream_id": str(result.stream_id), "version": result.version, "position": result.position}


def _restored(kept: Mapping[str, Any]) -> CommandResult:
    return CommandResult(UUID(kept["stream_id"]), kept["version"], kept["position"], "repeated")


# -- the store commands act on ----------------------------------------------------------------
# The states commands act on, kept between commands in this process (see StateCache).
STATES = StateCache()
# Forgetting a subject bumps a generation in Redis (Django's cache); every process (web, worker)
# compares it with the one its STATES were kept under before using them, at most once a
# FORGET_CHECK_S, and drops them all when it moved: no process keeps a forgotten owner's name.
# (A state kept a moment longer is never wrong: a load folds the AccountOwnerForgotten after it.)
FORGET_GENERATION_KEY = "eventfold:ledger:forget-generation"
FORGET_CHECK_S = 1.0
_generation: dict[str, Any] = {"seen": None, "checked_at": float("-inf")}
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
        return Repository(kind, EventStore(), cache=_current_states())
    return Repository(kind, chosen[0], cache=chosen[1])


def _current_states() -> StateCache:
    """STATES, emptied first if a subject was forgotten since they were kept (see FORGET_GENERATION_KEY)."""
    now = time.monotonic()
    if now - _generation["checked_at"] < FORGET_CHECK_S:
        return STATES
    _generation["checked_at"] = now
    try:
        generation = cache.get(FORGET_GENERATION_KEY, 0)
    except Exception:  # Redis out of reach: the states stay (they are still right; see above)
        log.debug("the forget generation could not be read; the cached states stay")
        return STATES
    if generation != _generation["seen"]:
        STATES.clear()
        _generation["seen"] = generation
    return STATES


def drop_cached_states() -> None:
    """Every process drops the states it keeps (this one at once, the others on their next check)."""
    STATES.clear()
    _generation["checked_at"] = float("-inf")
    try:
        cache.add(FORGET_GENERATION_KEY, 0, timeout=None)
        cache.incr(FORGET_GENERATION_KEY)
    except Exception:  # the forgetting is committed: say so, not 500 (the states are still right)
        log.warning("Redis out of reach: other processes keep their cached states until they restart")


@contextmanager
def one_transaction() -> Iterator[None]:
    """A transaction on the store commands act on (none on an in-memory store: each append is one)."""
    chosen = store()
    if isinstance(chosen, EventStore):
        with transaction.atomic(using=chosen.using):
            yield
    else:
        yield


def load(kind: type[A], stream_id: UUID) -> A:
    """The aggregate as it stands now; NotFound if the stream does not exist."""
    return _load(repository(kind), stream_id)


def _load(repo: Repository[A], stream_id: UUID) -> A:
    try:
        return repo.load(stream_id)
    except AggregateNotFound:
        raise NotFound(repo.type.category, stream_id) from None


# -- the one load-act-save loop -----------------------------------------------------------------
@contextmanager
def running(ctx: CommandContext, command: str, stream_id: UUID) -> Iterator[None]:
    """What runs a command: its log lines carry its correlation, cause and stream, and, when
    tracing is on, it is a span (whose appends pass the trace on in the events' metadata)."""
    correlation_id = str(ctx.correlation_id or ctx.command_id)
    causation_id = str(ctx.causation_id or ctx.command_id)
    with (
        structlog.contextvars.bound_contextvars(
            correlation_id=correlation_id, causation_id=causation_id, command=command, stream=str(stream_id)
        ),
        tracing.span(
            f"command {command}",
            {
                "eventfold.command": command,
                "eventfold.stream": str(stream_id),
                "eventfold.correlation_id": correlation_id,
                "eventfold.causation_id": causation_id,
            },
        ),
    ):
        yield


def create(aggregate: AggregateLike, ctx: CommandContext, command: str) -> CommandResult:
    """Append a new aggregate's first events (the stream must not exist yet)."""
    with running(ctx, command, aggregate.id):
        result = _save(repository(type(aggregate)), aggregate, ctx, command, NO_STREAM)
        log.debug("command done", outcome=result.outcome, version=result.version, position=result.position)
        return result


def change(
    kind: type[A], stream_id: UUID, ctx: CommandContext, command: str, act: Callable[[A], None]
) -> CommandResult:
    """Load, act, append what the act recorded at the version loaded. A lost race reloads and acts
    again (at most CONFLICT_RETRIES times), unless the sender named the version (If-Match)."""
    repo = repository(kind)
    with running(ctx, command, stream_id):
        for attempt in range(CONFLICT_RETRIES + 1):
            aggregate = _load(repo, stream_id)
            if ctx.expected_version is not None and aggregate.version != ctx.expected_version:
                raise ConcurrencyError(stream_id, ctx.expected_version, aggregate.version)
            act(aggregate)
            try:
                result = _save(repo, aggregate, ctx, command, aggregate.version)
            except ConcurrencyError as exc:
                if ctx.expected_version is not None or attempt == CONFLICT_RETRIES:
                    raise
                if _in_transaction():
                    raise LostRaceInTransaction(exc) from exc
                log.debug("command lost a race; loading again", attempt=attempt + 1)
                continue
            log.debug("command done", outcome=result.outcome, version=result.version, position=result.position)
            return result
    raise AssertionError("unreachable")


def _in_transaction() -> bool:
    """Whether appends on the real store join a caller's transaction (a keyed command's)."""
    return _store.get() is None and transaction.get_connection().in_atomic_block


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
    StreamTombstoned: lambda e: Refusal(
        409, "stream_tombstoned", "this stream is tombstoned: it accepts no more events"
    ),
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
    "stream_tombstoned": 409,
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
