"""Process managers: subscribers that react to events by issuing commands.

    @register
    class TransferProcess(ProcessManager):
        name = "transfer_process"

        @handles("ledger.TransferRequested")
        def requested(self, event: RecordedEvent) -> None:
            handlers.transfer_debit(transfer_id=event.stream_id, ctx=...)

A process manager follows the log like a projection, but its handlers append events, and an
append must be the first write of its transaction (docs/design.md). So a handler never runs inside
a transaction of the runner: each command commits on its own, and the checkpoint moves after
the batch, by compare-and-set, in a short transaction of its own. A crash in between hands the
same events to the handlers again, so they must be idempotent: commands whose event ids derive
from the triggering event's id, and whose guards look at the current state. (A manager whose
handlers neither append nor write, `in_batch`, as the integration publisher, is the exception:
the projections' batch handles its events before it writes anything, see `in_batch`.)

Per (process manager, bucket), as the projections' runner does: a lock (a *session* advisory
lock, with a key of its own, since no transaction spans the run), the checkpoint row in
`projections_checkpoint` (projection = the process manager's name), batches after it below the
read horizon. A handler that raises parks the (process manager, bucket) with the event and its
(redacted) traceback; retry, skip, pause and resume work as for projections. A lost optimistic-concurrency
race is not poison: the run stops before that event and is queued again. Nor is a handler's
`Deferred` (something outside is away for a while, e.g. the broker the integration publisher
publishes to): the run stops before that event, the bucket stays unparked and lagging, and beat's
`projections.tick` wakes it again a few seconds later, so an outage only delays.

Process managers are never rebuilt, reset or replayed by a rebuild (`kind = "process"`; they
live in a registry of their own, which rebuilds never walk). On first use their checkpoints
start at zero: handling old history again issues commands that change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any, ClassVar, Literal

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from eventstore.errors import ConcurrencyError
from eventstore.records import Checkpoint, RecordedEvent
from eventstore.store import EventStore
from projections import metrics, tracebacks
from projections.base import Registry, Subscriber, handles
from projections.context import applying
from projections.models import BucketCheckpoint, Skip
from projections.runner import HAS_SKIPS, Passer, bucket_heads, ensure_checkpoints, lock_key

__all__ = ["Deferred", "ProcessManager", "handles", "lagging_buckets", "process_registry", "register", "run", "run_all"]

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000  # events read per batch: most are not a process manager's, and those cost nothing
HANDLED_PER_BATCH = 100  # each handled event costs a few commands, not one upsert: a batch ends after so many
BATCHES_PER_RUN = 20
Outcome = Literal["applied", "drained", "busy", "paused", "failed", "more", "deferred"]
# The database went away: not the event's fault, so never a reason to park it.
LOST_CONNECTION = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


class Deferred(Exception):
    """A handler cannot handle the event now, through no fault of the event (a broker away): the
    run stops before it, unparked, and the bucket is tried again on beat's next tick, not at once."""


class ProcessManager(Subscriber):
    """Subclasses set `name` (distinct from every projection's) and mark their handlers with
    `@handles(event type, ...)`; a handler takes the recorded event and issues idempotent commands."""

    kind: ClassVar[str] = "process"  # never rebuilt, reset or replayed by a rebuild
    version: ClassVar[int] = 1  # only for the shared state row: a process manager has no tables to rebuild
    batch_size: ClassVar[int] = BATCH_SIZE  # events read per batch (the checkpoint moves once per batch)
    handled_per_batch: ClassVar[int] = HANDLED_PER_BATCH  # and the batch ends after handling so many
    # True when its handlers neither append nor write to the database (they translate and send
    # elsewhere, as the integration publisher does): the projections' batch then handles and
    # flushes its events itself, before writing anything, and moves its checkpoint with theirs,
    # sparing it a run of its own (runner.apply_batch; `in_batch` below).
    in_batch: ClassVar[bool] = False

    def handle(self, event: RecordedEvent) -> None:
        getattr(self, self.handlers[event.type])(event)

    def flush(self) -> None:
        """Called once per batch, before the checkpoint moves past the events handled: a process
        manager that holds back work from `handle` (the integration publisher sends its messages
        here, together) does it now. `Deferred` leaves the checkpoint where the batch began."""

    def discard(self) -> None:
        """Called when a batch ends, flushed or not: forget whatever `handle` held back."""


process_registry: Registry[ProcessManager] = Registry()  # apart from the projections' registry
register = process_registry.register


def advisory_key(name: str) -> int:
    """The first key of the (process manager, bucket) session lock: never a projection's."""
    return lock_key("process:" + name)


def ensure(name: str, *, force: bool = False) -> None:
    """Create the process manager's state row and bucket checkpoints (at zero) on first use."""
    ensure_checkpoints(process_registry.get(name), force=force)


def run_all(bucket: int, *, done: Collection[str] = ()) -> dict[str, Outcome]:
    """Every process manager's run over the bucket, but those in `done` (drained by the
    projections' batch, which carried them past events they do not handle)."""
    return {p.name: run(p.name, bucket) for p in process_registry.all() if p.name not in done}


def passers() -> list[Passer]:
    """Every process manager, as the projections' batches may carry it (runner.apply_batch)."""
    for process in process_registry.all():
        ensure(process.name)
    return [
        Passer(p.name, advisory_key(p.name), frozenset(p.handlers), in_batch(p) if p.in_batch else None)
        for p in process_registry.all()
    ]


# `in_batch` managers whose last flush was deferred (a broker away): their own runs take their
# events until one of them flushes again, so that a broker away (or one that holds a publish for
# seconds, as RabbitMQ does in a memory alarm) does not hold every projections' batch.
_away: set[str] = set()


def in_batch(process: ProcessManager) -> Callable[[list[RecordedEvent]], bool | None]:
    """How the projections' batch handles an `in_batch` manager's events (every event of the batch
    after its checkpoint): each handled, then flushed, as its own batch would. False when one
    raises or the flush is deferred, None when it does not try (more than `handled_per_batch`, or
    the manager is `_away`): its checkpoint stays, and its own run meets the same events and
    parks, defers or goes on as it always does."""

    def handle(events: list[RecordedEvent]) -> bool | None:
        mine = [e for e in events if e.type in process.handlers]
        if process.name in _away or len(mine) > process.handled_per_batch:
            return None
        try:
            for event in mine:
                with applying(process.name, event, "process"):
                    process.handle(event)
            process.flush()
        except Deferred:
            _away.add(process.name)
            return False
        except Exception:
            log.info("process %s: its own run takes the batch that failed in the projections' batch", process.name)
            return False
        finally:
            process.discard()
        return True

    return handle


def run(name: str, bucket: int, *, max_batches: int = BATCHES_PER_RUN) -> Outcome:
    """Handle the bucket's events after the checkpoint until it is drained (or busy, paused,
    failed, deferred, a race was lost, or the budget is spent: "more")."""
    if connection.in_atomic_block:
        raise RuntimeError("a process manager appends: run it outside any transaction")
    ensure(name)
    key = advisory_key(name)
    with connection.cursor() as cur:  # one round trip: the lock, then the state for the first batch
        pg = connection.connection
        with pg.pipeline(), pg.cursor() as locking:  # the state's snapshot is taken once the lock is held
            locking.execute("SELECT pg_try_advisory_lock(%s, %s)", [key, bucket])
            cur.execute(STATE_OR_NONE, [name, bucket])
            [locked] = locking.fetchone()
        state = cur.fetchone()
        if not locked:
            return "busy"
    first: tuple[Any, ...] | None = tuple(state) if state[0] is not None else None
    try:
        for _ in range(max_batches):
            with metrics.BATCH_SECONDS.labels("process").time():
                outcome = _run_batch(process_registry.get(name), bucket, first)
            first = None
            if outcome != "applied":
                return outcome
        return "more"
    finally:
        try:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [key, bucket])
        except DatabaseError:  # the session is gone, and its lock with it
            log.warning("could not unlock %s/%s", name, bucket, exc_info=True)


_STATE_COLUMNS = f"c.tx_id, c.position, c.failed, s.paused, {HAS_SKIPS}"
STATE = (
    f"SELECT {_STATE_COLUMNS} FROM projections_checkpoint c "
    "JOIN projections_projectionstate s ON s.name = c.projection WHERE c.projection = %s AND c.bucket = %s"
)
# the state's columns are NULL when the checkpoint is gone (a test's flush)
STATE_OR_NONE = (
    f"SELECT {_STATE_COLUMNS} FROM (SELECT 1) AS one "
    "LEFT JOIN (projections_checkpoint c JOIN projections_projectionstate s ON s.name = c.projection) "
    "ON c.projection = %s AND c.bucket = %s"
)


def _run_batch(process: ProcessManager, bucket: int, state: tuple[Any, ...] | None = None) -> Outcome:
    """One batch; `state`: the checkpoint's row (STATE's columns) when the caller has just read it."""
    row = state
    if row is None:
        with connection.cursor() as cur:
            cur.execute(STATE, [process.name, bucket])
            row = cur.fetchone()
    if row is None:  # gone since this worker made them (a test's flush): make them again
        ensure(process.name, force=True)
        return "applied"
    checkpoint, failed, paused, has_skips = Checkpoint(row[0], row[1]), row[2], row[3], row[4]
    if failed:
        return "failed"
    if paused:
        return "paused"
    # Every type, not only the handled ones: so the checkpoint reaches the bucket's head, and lag
    # (here, in lagging_buckets and in the projections overview) means what it means for projections.
    page = EventStore().read_all(checkpoint, limit=process.batch_size, bucket=bucket)
    if not page.events:
        return "drained"
    mine = [e.event_id for e in page.events if e.type in process.handlers]
    skipped = (
        set(Skip.objects.filter(projection=process.name, event_id__in=mine).values_list("event_id", flat=True))
        if mine and has_skips
        else set()
    )
    done = checkpoint
    park: tuple[RecordedEvent, str] | None = None
    outcome: Outcome | None = None
    handled = 0
    try:
        for event in page.events:
            if event.type in process.handlers and event.event_id not in skipped:
                with applying(process.name, event, "process") as scope:
                    try:
                        process.handle(event)
                    except ConcurrencyError as exc:  # lost races, even after the handler's retries: try again soon
                        scope.failed(exc)
                        log.info("process %s lost a race on event %s; trying again", process.name, event.event_id)
                        outcome = "more"
                    except Deferred as exc:
                        scope.failed(exc)
                        log.debug("process %s deferred event %s: %s", process.name, event.event_id, exc)
                        outcome = "deferred"
                    except LOST_CONNECTION:
                        raise
                    except Exception as exc:
                        scope.failed(exc)
                        log.exception("process %s failed on event %s", process.name, event.event_id)
                        park, outcome = (event, tracebacks.redacted(exc)), "failed"
                if outcome is not None:
                    break
                handled += 1
            done = event.checkpoint
            if handled >= process.handled_per_batch:
                outcome = "applied"  # the rest of the page in the next batch: a crash redoes at most this many
                break
        try:
            process.flush()  # what was held back for the events before `done` goes out first
        except Deferred as exc:
            log.debug("process %s deferred a batch of bucket %s: %s", process.name, bucket, exc)
            return "deferred"
        _away.discard(process.name)  # it went through: the projections' batch may take it again
    finally:
        process.discard()
    if outcome is None:
        outcome = "applied" if len(page.events) == process.batch_size else "drained"
    if not _stop(process.name, bucket, checkpoint, done, park=park):
        return "failed" if park is not None else "busy"
    return outcome


def _stop(
    name: str, bucket: int, expected: Checkpoint, done: Checkpoint, *, park: tuple[RecordedEvent, str] | None = None
) -> bool:
    """Move the checkpoint from `expected` to `done` by compare-and-set (and park the bucket on
    the given event), in one short transaction. False when the checkpoint was not where expected."""
    if park is None:  # one statement, atomic on its own (run() holds no transaction)
        return _moved(name, bucket, expected, done)
    with transaction.atomic():
        if not _moved(name, bucket, expected, done):
            return False
        event, error = park
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE projections_checkpoint SET failed = true, error_event_id = %s, error_position = %s, "
                "error = %s, failed_at = %s WHERE projection = %s AND bucket = %s",
                [event.event_id, event.position, error, timezone.now(), name, bucket],
            )
    return True


def _moved(name: str, bucket: int, expected: Checkpoint, done: Checkpoint) -> bool:
    """Compare-and-set the checkpoint from `expected` to `done`; False when it was elsewhere."""
    if done == expected:
        return True
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE projections_checkpoint SET tx_id = %s, position = %s, updated_at = now() "
            "WHERE projection = %s AND bucket = %s AND tx_id = %s AND position = %s",
            [done.tx_id, done.position, name, bucket, expected.tx_id, expected.position],
        )
        if cur.rowcount == 1:
            return True
    log.warning("checkpoint of %s/%s moved under us", name, bucket)
    return False


def lagging_buckets() -> list[int]:
    """Buckets with events some process manager has not handled yet (every bucket with events
    when one has never run). Parked buckets wait for an operator, not for beat."""
    names = [p.name for p in process_registry.all()]
    if not names:
        return []
    heads = bucket_heads()
    rows = BucketCheckpoint.objects.filter(projection__in=names).values_list(
        "projection", "bucket", "tx_id", "position", "failed"
    )
    behind, seen = set(), set()
    for name, bucket, tx_id, position, failed in rows:
        seen.add(name)
        head = heads.get(bucket)
        if not failed and head is not None and Checkpoint(tx_id, position) < head:
            behind.add(bucket)
    if set(names) - seen:
        behind.update(heads)
    return sorted(behind)
