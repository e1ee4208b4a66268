"""Blue/green rebuilds: a projection's next tables are built from position zero while the
current ones keep serving reads, then swapped in by one short transaction.

- `start` records a `Rebuild` and creates the scratch schema (projections.scratch), once per
  projection at a time.
- `run_slice` works for a few seconds: batches of events read in the log's order, folded by
  `Projection.rebuild_batch` into the scratch tables; each batch commits together with the
  rebuild's checkpoint and counters, so a killed worker's successor resumes where it stopped.
- Once a batch comes back short, `_switch` builds the plain indexes, catches up once more, and
  then, in one transaction with the projection's bucket locks held (so no live batch runs) and a
  lock timeout (so readers wait milliseconds, never minutes): applies the last events, drops
  the old tables, moves the new ones into place, sets every bucket's checkpoint to where the new
  tables stand and bumps the projection's generation. Readers see the old tables or the new
  ones, never an empty or partial one.

Only one chain of slices works on a rebuild: each carries the rebuild's `ticket`, and resuming
a stalled rebuild (beat) hands out a new ticket, which retires any older chain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg import errors as pg_errors
from psycopg import sql

from eventstore import hooks
from eventstore.records import BUCKETS, START, Checkpoint
from projections import scratch, tracebacks, wakeups
from projections.base import Projection, projection_registry
from projections.models import BucketCheckpoint, ProjectionState, Rebuild
from projections.runner import ensure_checkpoints, lock_key

log = logging.getLogger(__name__)

SLICE_TASK = "rebuilds.slice"  # sent by name: projections.tasks sits above this module
SLICE_S = 2.0  # a task's share of the rebuilds queue before it hands over to its successor
STALLED_AFTER_S = settings.REBUILD_STALLED_AFTER_S  # a running rebuild this long without progress: beat resumes it
SWITCH_LOCK_TIMEOUT = "2s"
SWITCH_ATTEMPTS = 5
PROGRESS_EVERY_S = 0.5  # listeners hear of progress at most twice a second
REBUILD_LOCK = lock_key("eventfold.rebuild")

Outcome = Literal["more", "retry", "done", "failed", "busy", "gone"]
BatchOutcome = Literal["more", "caught_up", "busy", "gone"]
# A lost connection, through Django's cursors or the event store's own psycopg ones (not wrapped by Django)
LOST_CONNECTION = (OperationalError, InterfaceError, pg_errors.OperationalError, pg_errors.InterfaceError)
# Called with (projection name, Rebuild.progress()) at most twice a second per slice, and at the end.
progress_listeners: list[Callable[[str, dict[str, Any]], None]] = []


class NotRebuildable(Exception):
    pass


def enqueue(rebuild: Rebuild) -> None:
    """Queue the rebuild's next slice once the current transaction commits. A broker that cannot
    be reached loses that slice, not the rebuild: it is recorded, and beat resumes a rebuild that
    has not moved for REBUILD_STALLED_AFTER_S (`resume_stalled`)."""
    rebuild_id, ticket = rebuild.pk, rebuild.ticket

    def send() -> None:
        try:
            current_app.send_task(SLICE_TASK, args=(rebuild_id, ticket))
        except Exception:
            log.warning(
                "could not queue a slice of rebuild %s; beat resumes it once it has stalled for %s s",
                rebuild_id,
                STALLED_AFTER_S,
                exc_info=True,
            )

    transaction.on_commit(send)


def start(name: str, *, reason: str = "", user: Any = None, run_in_worker: bool = True) -> Rebuild:
    """Begin rebuilding a projection (or return the rebuild already running)."""
    if name not in projection_registry:
        raise NotRebuildable(f"{name} is not a projection")
    projection = projection_registry.get(name)
    ensure_checkpoints(projection)
    running = Rebuild.objects.filter(projection=name, state=Rebuild.State.RUNNING).first()
    if running:
        return running
    try:
        with transaction.atomic():
            rebuild = Rebuild.objects.create(
                projection=name,
                version=projection.version,
                reason=reason,
                requested_by=user,
                total=_remaining(projection),
            )
            with connection.cursor() as cur:
                scratch.create(cur, projection, rebuild.schema)
            if run_in_worker:
                enqueue(rebuild)
    except IntegrityError:  # another request started it a moment ago
        return Rebuild.objects.get(projection=name, state=Rebuild.State.RUNNING)
    log.info("rebuild %s of %s v%s started (%s)", rebuild.pk, name, projection.version, reason)
    _notify(rebuild)
    return rebuild


def _remaining(projection: Projection, after: Checkpoint = START) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM eventstore_event WHERE event_type = ANY(%s) "
            "AND (tx_id, global_position) > (%s::text::xid8, %s)",
            [projection.event_types, after.tx_id, after.position],
        )
        return cur.fetchone()[0]


# The memo of this process's last slice, carried to the next slice of the same rebuild when that
# starts where it ended (one worker doing one rebuild): rows need not be read back.
_carried: dict[int, tuple[Checkpoint, dict[str, Any]]] = {}
CARRY_LIMIT = 1_000_000  # rows; a bigger memo is dropped at the end of its slice


def _memo_for(rebuild: Rebuild) -> dict[str, Any]:
    at = Checkpoint(rebuild.tx_id, rebuild.position)
    carried = _carried.pop(rebuild.pk, None)
    _carried.clear()
    if carried is not None and carried[0] == at:
        return carried[1]
    return {"complete": True} if at == START else {}


def _carry(rebuild_id: int, memo: dict[str, Any]) -> None:
    if sum(len(v) for v in memo.values() if isinstance(v, dict)) > CARRY_LIMIT:
        return
    at = Rebuild.objects.filter(pk=rebuild_id).values_list("tx_id", "position").first()
    if at is not None:
        _carried[rebuild_id] = (Checkpoint(*at), memo)


def run_slice(rebuild_id: int, ticket: int | None = None, seconds: float = SLICE_S) -> Outcome:
    """Work on the rebuild for about `seconds`; "more" means call again. A lost connection, wherever
    the slice meets it (its first query, a batch, the swap), is not the events' fault: what it was
    doing rolled back, and "retry" has the chain go on shortly, without the memo."""
    try:
        return _slice(rebuild_id, ticket, seconds)
    except LOST_CONNECTION:
        _carried.pop(rebuild_id, None)
        log.warning("rebuild %s lost its database connection; it will go on", rebuild_id, exc_info=True)
        connection.close()
        return "retry"


def _slice(rebuild_id: int, ticket: int | None, seconds: float) -> Outcome:
    began, applied = time.monotonic(), 0
    last_notice = 0.0
    rebuild = Rebuild.objects.filter(pk=rebuild_id).first()
    if rebuild is None or rebuild.state != Rebuild.State.RUNNING or (ticket is not None and ticket != rebuild.ticket):
        return "gone"
    memo = _memo_for(rebuild)
    projection = projection_registry.get(rebuild.projection)
    skips = scratch.skipped(projection)
    while True:
        try:
            outcome, n = _batch(rebuild_id, ticket, projection, memo, skips, began, applied)
        except LOST_CONNECTION:
            raise
        except Exception as exc:
            memo.clear()
            return _fail(rebuild_id, exc)
        applied += n
        if outcome != "more":
            break
        now = time.monotonic()
        if now - last_notice >= PROGRESS_EVERY_S:
            last_notice = now
            _notify(Rebuild.objects.get(pk=rebuild_id))
        if now - began >= seconds:
            _carry(rebuild_id, memo)
            return "more"
    if outcome == "caught_up":
        try:
            return _switch(rebuild_id, projection, memo, skips)
        except LOST_CONNECTION:
            raise
        except Exception as exc:
            return _fail(rebuild_id, exc)
    return outcome


def _batch(
    rebuild_id: int, ticket: int | None, projection: Projection, memo: dict, skips: set, began: float, applied: int
) -> tuple[BatchOutcome, int]:
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [REBUILD_LOCK, rebuild_id])
        if not cur.fetchone()[0]:
            return "busy", 0
        rebuild = Rebuild.objects.get(pk=rebuild_id)
        if rebuild.state != Rebuild.State.RUNNING or (ticket is not None and ticket != rebuild.ticket):
            return "gone", 0
        start = Checkpoint(rebuild.tx_id, rebuild.position)
        try:
            page = scratch.replay_batch(cur, projection, rebuild.schema, start, memo, skips)
        except Exception:
            memo.clear()
            raise
        if page.checkpoint != start or page.events:
            done = rebuild.done + len(page.events)
            elapsed = max(time.monotonic() - began, 1e-3)
            Rebuild.objects.filter(pk=rebuild_id).update(
                tx_id=page.checkpoint.tx_id,
                position=page.checkpoint.position,
                done=done,
                total=max(rebuild.total, done),
                events_per_s=(applied + len(page.events)) / elapsed,
                updated_at=timezone.now(),
            )
        return ("more" if page.full else "caught_up"), len(page.events)


def _switch(rebuild_id: int, projection: Projection, memo: dict, skips: set) -> Outcome:
    """Indexes, a last catch-up, then the swap in one short transaction."""
    rebuild = Rebuild.objects.get(pk=rebuild_id)
    with transaction.atomic(), connection.cursor() as cur:
        scratch.add_indexes(cur, projection, rebuild.schema)
    for attempt in range(SWITCH_ATTEMPTS):
        # Catch up outside the swap, so that the swap itself has little left to apply.
        outcome: BatchOutcome = "more"
        while outcome == "more":
            outcome, _ = _batch(rebuild_id, None, projection, memo, skips, time.monotonic(), 0)
            if outcome == "busy" or outcome == "gone":
                return outcome
        try:
            return _swap(rebuild_id, projection, memo, skips)
        except OperationalError as exc:
            if not isinstance(exc.__cause__, pg_errors.LockNotAvailable):
                raise
            memo.clear()  # readers or a live batch held on longer than the lock timeout
            log.warning("rebuild %s: swap attempt %s timed out (%s); trying again", rebuild_id, attempt + 1, exc)
            time.sleep(0.2 * (attempt + 1))
    return "more"  # the next slice tries again


def _swap(rebuild_id: int, projection: Projection, memo: dict, skips: set) -> Outcome:
    name = projection.name
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", [SWITCH_LOCK_TIMEOUT])
        cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [REBUILD_LOCK, rebuild_id])
        if not cur.fetchone()[0]:
            return "busy"
        # Every live batch of this projection has ended and none can start until we commit.
        cur.execute(
            "SELECT count(pg_advisory_xact_lock(%s, b)) FROM generate_series(0, %s) AS b", [lock_key(name), BUCKETS - 1]
        )
        rebuild = Rebuild.objects.get(pk=rebuild_id)
        if rebuild.state != Rebuild.State.RUNNING:
            return "gone"
        at = Checkpoint(rebuild.tx_id, rebuild.position)
        done = rebuild.done
        while True:
            page = scratch.replay_batch(cur, projection, rebuild.schema, at, memo, skips)
            at, done = page.checkpoint, done + len(page.events)
            if not page.full:
                break
        live = {table: scratch.live_schema(table) for table in projection.tables}
        for table, schema in live.items():
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)).as_string(None))
            cur.execute(
                sql.SQL("ALTER TABLE {} SET SCHEMA {}")
                .format(sql.Identifier(rebuild.schema, table), sql.Identifier(schema))
                .as_string(None)
            )
        cur.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(rebuild.schema)).as_string(None))
        BucketCheckpoint.objects.filter(projection=name).update(
            tx_id=at.tx_id,
            position=at.position,
            failed=False,
            error="",
            error_event_id=None,
            error_position=None,
            failed_at=None,
            updated_at=timezone.now(),
        )
        ProjectionState.objects.filter(name=name).update(version=rebuild.version, generation=F("generation") + 1)
        Rebuild.objects.filter(pk=rebuild_id).update(
            state=Rebuild.State.DONE,
            tx_id=at.tx_id,
            position=at.position,
            done=done,
            total=done,
            updated_at=timezone.now(),
            finished_at=timezone.now(),
        )
    log.info("rebuild %s of %s swapped in at position %s", rebuild_id, name, at.position)
    if hooks.enabled():  # catch-up resumes from the new checkpoints (a scratch log's swap wakes nothing)
        wakeups.wake_all()
    _notify(Rebuild.objects.get(pk=rebuild_id))
    return "done"


def _fail(rebuild_id: int, exc: Exception) -> Outcome:
    """Record the failure, its traceback redacted (every viewer sees it, and the log gets the same)."""
    log.error("rebuild %s failed", rebuild_id, exc_info=exc)
    now = timezone.now()
    Rebuild.objects.filter(pk=rebuild_id, state=Rebuild.State.RUNNING).update(
        state=Rebuild.State.FAILED, error=tracebacks.redacted(exc), updated_at=now, finished_at=now
    )
    rebuild = Rebuild.objects.get(pk=rebuild_id)
    scratch.drop(rebuild.schema)
    _notify(rebuild)
    return "failed"


def cancel(name: str) -> Rebuild | None:
    with transaction.atomic():
        rebuild = Rebuild.objects.select_for_update().filter(projection=name, state=Rebuild.State.RUNNING).first()
        if rebuild is None:
            return None
        Rebuild.objects.filter(pk=rebuild.pk).update(
            state=Rebuild.State.CANCELLED, updated_at=timezone.now(), finished_at=timezone.now()
        )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [REBUILD_LOCK, rebuild.pk])  # wait for its batch
    scratch.drop(rebuild.schema)
    rebuild.refresh_from_db()
    _notify(rebuild)
    return rebuild


def resume_stalled(enqueue_slice: bool = True) -> list[int]:
    """Hand a new ticket to every running rebuild that has not moved for a while (its worker died,
    or its task was lost) and queue a slice for it."""
    resumed = []
    stale = timezone.now() - timedelta(seconds=STALLED_AFTER_S)
    for rebuild in Rebuild.objects.filter(state=Rebuild.State.RUNNING, updated_at__lt=stale):
        with transaction.atomic():
            updated = Rebuild.objects.filter(pk=rebuild.pk, ticket=rebuild.ticket).update(
                ticket=F("ticket") + 1, updated_at=timezone.now()
            )
            if updated:
                rebuild.refresh_from_db()
                if enqueue_slice:
                    enqueue(rebuild)
                resumed.append(rebuild.pk)
    return resumed


def changed() -> list[str]:
    """Projections whose version in code differs from the version serving reads."""
    states = dict(ProjectionState.objects.values_list("name", "version"))
    return [p.name for p in projection_registry.all() if p.name in states and states[p.name] != p.version]


def rebuild_changed(reason: str = "version changed") -> list[Rebuild]:
    """Start a rebuild of every projection whose version changed (a deploy with a new version)."""
    return [start(name, reason=reason) for name in changed()]


def active(name: str) -> Rebuild | None:
    return Rebuild.objects.filter(projection=name, state=Rebuild.State.RUNNING).first()


def _notify(rebuild: Rebuild) -> None:
    for listener in progress_listeners:
        try:
            listener(rebuild.projection, rebuild.progress())
        except Exception:  # progress is a courtesy: never fail a rebuild for it
            log.exception("rebuild progress listener failed")
