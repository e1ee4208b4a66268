"""The catch-up runner: per (projection, bucket), in short transactions.

Each batch: take `pg_try_advisory_xact_lock(projection, bucket)` (another worker holding it
means someone else is on it), read a batch after the checkpoint below the horizon, apply it,
move the checkpoint with a compare-and-set, commit. Read model and checkpoint change in the
same transaction, so a redelivered or duplicated task changes nothing.

A handler that raises parks its (projection, bucket): the events before it are applied and
checkpointed, the failing event and its traceback recorded (redacted: projections/tracebacks.py);
other buckets keep going.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Literal, NamedTuple

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from eventstore.records import BUCKETS, Checkpoint, RecordedEvent
from eventstore.store import EventStore
from projections import metrics, tracebacks
from projections.base import Projection, Subscriber, projection_registry
from projections.context import applying
from projections.models import BucketCheckpoint, ProjectionState, Skip

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCHES_PER_RUN = 20
# A bucket far behind (its last batch was full) reads this many events a batch, and a projection
# with at least BULK_MIN_EVENTS of its own in a batch folds them in memory and writes each row
# once (`Projection.rebuild_batch`, as rebuilds do) instead of one statement per event.
BULK_BATCH_SIZE = 5_000
BULK_MIN_EVENTS = 50
Outcome = Literal["applied", "drained", "busy", "paused", "failed", "more"]


def lock_key(name: str) -> int:
    return zlib.crc32(name.encode()) - 2**31  # a stable signed int4 (never Python's hash())


_ensured: set[tuple[str, str]] = set()  # (database name, projection) done by this process


class Passer(NamedTuple):
    """A process manager the projections' batch may carry past the events it does not handle: its
    name, the first key of its (name, bucket) lock, and the event types it handles; and, for one
    whose handlers neither append nor write (processes.in_batch), how to handle and flush its
    events within the batch: True when every one went out, False when that failed, None when it
    did not try."""

    name: str
    key: int
    handles: frozenset[str]
    handle: Callable[[list[RecordedEvent]], bool | None] | None = None


# Whether an operator skipped events of the checkpoint `c`'s subscriber in its bucket (then, and only
# then, a batch looks its events up among the skips).
HAS_SKIPS = "EXISTS (SELECT 1 FROM projections_skip sk WHERE sk.projection = c.projection AND sk.bucket = c.bucket)"
# Try each (subscriber, bucket)'s lock (never waits: no deadlock, whatever the order); then, in a
# statement of its own, so that its snapshot is taken once the locks are held (a holder that
# commits while the locks are being tried has moved its checkpoints), read the checkpoints.
LOCKS = """
SELECT pg_try_advisory_xact_lock(k.key, k.bucket)
FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY AS k(key, bucket, n) ORDER BY k.n
"""
CHECKPOINTS = f"""
SELECT c.projection, c.bucket, c.tx_id, c.position, c.failed, s.paused, {HAS_SKIPS}
FROM unnest(%s::text[], %s::int[]) AS k(name, bucket)
JOIN projections_checkpoint c ON c.projection = k.name AND c.bucket = k.bucket
JOIN projections_projectionstate s ON s.name = c.projection
"""


def ensure_checkpoints(projection: Subscriber, *, force: bool = False) -> None:
    """Create the state and the bucket checkpoints of a projection (or a process manager) on first use."""
    key = (connection.settings_dict["NAME"], projection.name)
    if key in _ensured and not force:
        return
    ProjectionState.objects.get_or_create(name=projection.name, defaults={"version": projection.version})
    BucketCheckpoint.objects.bulk_create(
        [BucketCheckpoint(projection=projection.name, bucket=b) for b in range(BUCKETS)], ignore_conflicts=True
    )
    _ensured.add(key)


def group() -> list[Projection]:
    """Every projection, its checkpoints made (on first use)."""
    projections = list(projection_registry.all())
    for projection in projections:
        ensure_checkpoints(projection)
    return projections


def catch_up(
    bucket: int, *, max_batches: int = BATCHES_PER_RUN, touched: set | None = None, passing: Sequence[Passer] = ()
) -> dict[str, Outcome]:
    """Apply batches of the bucket to every projection, each batch of events read once for all,
    until each is drained (or busy, paused, failed, or the budget is spent: "more").
    `touched` collects the ids of the streams whose events were applied. `passing`: process
    managers each batch carries along while it has nothing for them (see `apply_batch`); the
    outcomes name those it carried, "drained" meaning that the manager has nothing left to do."""
    names = [p.name for p in projection_registry.all()]
    passers = list(passing)
    outcomes: dict[str, Outcome] = {}
    size = BATCH_SIZE
    for _ in range(max_batches):
        for name in names:
            ensure_checkpoints(projection_registry.get(name))
        with metrics.BATCH_SECONDS.labels("projection").time():
            step = apply_batch([projection_registry.get(n) for n in names], bucket, size, touched, passers)
        outcomes.update(step)
        passers = [p for p in passers if step.get(p.name) == "applied"]
        names = [n for n in names if step.get(n) == "applied"]
        if not names:
            return outcomes
        size = BULK_BATCH_SIZE  # a full batch: the bucket is behind, so read more at a time
    outcomes.update(dict.fromkeys(names, "more"))
    outcomes.update(dict.fromkeys((p.name for p in passers), "more"))
    return outcomes


def apply_batch(
    group: list[Projection],
    bucket: int,
    batch_size: int = BATCH_SIZE,
    touched: set | None = None,
    passers: Sequence[Passer] = (),
) -> dict[str, Outcome]:
    """`apply_batches` for one bucket."""
    return apply_batches(group, [bucket], batch_size, None if touched is None else {bucket: touched}, passers)[bucket]


def apply_batches(
    group: list[Projection],
    buckets: Sequence[int],
    batch_size: int = BATCH_SIZE,
    touched: Mapping[int, set] | None = None,
    passers: Sequence[Passer] = (),
) -> dict[int, dict[str, Outcome]]:
    """One transaction and one read of each bucket for several projections: each (projection,
    bucket) is locked, applied from its own checkpoint, and checkpointed (or parked) on its own.
    Several buckets (those whose wake-ups waited together, catchup.catch_up_pending) share the
    transaction and its round trips: one lock-and-read, one read, one write and move for all.
    Returns the outcomes by bucket.

    `passers` (process managers) are locked with their own lock (the one their runs hold) and, when
    the batch holds no event of a type one of them handles after its checkpoint, that checkpoint
    moves to the batch's end in the same statement as the projections' (as the manager's own run
    would move it, reading the same events: one catch-up of a deposit spared the transfer process
    its seven statements). A passer with a `handle` (an `in_batch` manager: the integration
    publisher) has its events handled and flushed here, before the projections write, and its
    checkpoint moved with theirs (a deposit's catch-up spared the publisher its own run). A manager
    that is busy, failed, paused, behind the batch's start or has something to handle that this
    batch does not handle gets no outcome here: it runs on its own, as before. `touched` collects,
    by bucket, the ids of the streams whose events were applied."""
    store = EventStore()
    outcomes: dict[int, dict[str, Outcome]] = {b: {} for b in buckets}
    with transaction.atomic(), connection.cursor() as cur:
        pg = connection.connection
        names = [p.name for p in group]
        every = names + [p.name for p in passers]
        keys = [lock_key(n) for n in names] + [p.key for p in passers]
        # One round trip (BEGIN with it): try each projection's (and passer's) lock for each bucket,
        # then read the checkpoints, and the batch's savepoint (after the locks: a rollback to it
        # keeps them).
        pairs = [(name, key, bucket) for bucket in buckets for name, key in zip(every, keys, strict=True)]
        with pg.pipeline(), pg.cursor() as locking:
            locking.execute(LOCKS, [[key for _, key, _ in pairs], [bucket for _, _, bucket in pairs]])
            cur.execute(CHECKPOINTS, [[name for name, _, _ in pairs], [bucket for _, _, bucket in pairs]])
            sid = transaction.savepoint()
            locked = [row[0] for row in locking.fetchall()]
        rows = {(row[0], row[1]): row[2:] for row in cur.fetchall()}
        found: Found = {
            (name, bucket): (held, *rows[name, bucket])
            for (name, _, bucket), held in zip(pairs, locked, strict=True)
            if (name, bucket) in rows
        }
        active: dict[int, dict[str, Checkpoint]] = {}
        for bucket in buckets:
            mine = _classify(names, bucket, found, outcomes[bucket])
            if mine:
                active[bucket] = mine
        if not active:
            return outcomes
        starts = {bucket: min(mine.values()) for bucket, mine in active.items()}
        # the archive too: a projection reset to an earlier place (or new) must meet archived streams
        pages = store.read_buckets(starts, limit=batch_size, include_archived=True)
        with_skips = {name for (name, bucket) in found if bucket in active and found[name, bucket][5]}
        every_event = [e.event_id for page in pages.values() for e in page]
        skipped = (  # event ids are unique across buckets: (projection, event id) is enough
            set(
                Skip.objects.filter(projection__in=with_skips, event_id__in=every_event).values_list(
                    "projection", "event_id"
                )
            )
            if every_event and with_skips
            else set()
        )
        ended: dict[int, Outcome] = {b: "applied" if len(pages[b]) == batch_size else "drained" for b in active}
        # The process managers first, before anything is written (so that the transaction holds
        # no transaction id while one publishes, and the read horizon never waits on a broker).
        handled, carried = _pass(passers, found, starts, pages, sid)
        # Usually no event fails: every projection applies its events under the batch's savepoint
        # (never released: the commit ends it), and when every one is `pipelined`, their writes
        # and the checkpoints' move go to PostgreSQL in one round trip. When one raises (in
        # Python, or in PostgreSQL at the round trip's end), the savepoint is rolled back and each
        # projection applies under its own (`_fold`), which finds the failing event and parks it.
        # (a batch that big may fold in memory, whose COPY pipeline mode cannot carry)
        together = all(len(page) < BULK_MIN_EVENTS for page in pages.values()) and all(
            projection_registry.get(n).pipelined for mine in active.values() for n in mine
        )
        passed = [move for moves in (handled, carried) for move in moves.values() if move is not None]
        try:
            with pg.pipeline() if together else nullcontext():
                moves = [
                    move
                    for bucket, mine in active.items()
                    for move in _fold_all(mine, bucket, pages[bucket], skipped, cur, touched)
                ] + passed
                _send_move(cur, moves)
        except Exception:
            transaction.savepoint_rollback(sid)
            log.info("buckets %s: an event failed in a batch; applying each projection on its own", list(active))
        else:
            _check_moved(cur, moves)
            for bucket, mine in active.items():
                outcomes[bucket].update(dict.fromkeys(mine, ended[bucket]))
            for name, bucket in [*handled, *carried]:
                outcomes[bucket][name] = ended[bucket]
            return outcomes
        # What the managers handled has gone out: their checkpoints move whatever the projections do.
        moves = [move for move in handled.values() if move is not None]
        for name, bucket in handled:
            outcomes[bucket][name] = ended[bucket]
        for bucket, mine in active.items():
            for name, checkpoint in mine.items():
                outcomes[bucket][name] = _fold_alone(
                    name, bucket, checkpoint, pages[bucket], skipped, cur, touched, moves
                )
                if outcomes[bucket][name] == "applied":
                    outcomes[bucket][name] = ended[bucket]
        _send_move(cur, moves)
        _check_moved(cur, moves)
    return outcomes


# (subscriber, bucket) -> whether its lock is held, and its checkpoint's tx_id, position, failed,
# paused, whether it has skips in this bucket
Found = dict[tuple[str, int], tuple[Any, ...]]


def _classify(names: list[str], bucket: int, found: Found, outcomes: dict[str, Outcome]) -> dict[str, Checkpoint]:
    """The projections of the bucket this batch applies (by checkpoint); the others' outcomes."""
    active: dict[str, Checkpoint] = {}
    for name in names:
        row = found.get((name, bucket))
        if row is None:
            _ensured.discard((connection.settings_dict["NAME"], name))
            outcomes[name] = "applied"  # try again once the rows exist
        elif not row[0]:
            outcomes[name] = "busy"
        elif row[3]:
            outcomes[name] = "failed"
        elif row[4]:
            outcomes[name] = "paused"
        else:
            active[name] = Checkpoint(row[1], row[2])
    return active


def _fold_alone(
    name: str,
    bucket: int,
    checkpoint: Checkpoint,
    page: list[RecordedEvent],
    skipped: set,
    cur: CursorWrapper,
    touched: Mapping[int, set] | None,
    moves: list[Move],
) -> Outcome:
    """Apply the page to one projection under a savepoint of its own, parking it at an event that
    fails; its checkpoint's move appended to `moves`. "applied" unless it failed."""
    projection = projection_registry.get(name)
    events = [e for e in page if e.checkpoint > checkpoint]
    if not events:
        return "applied"
    mine = {eid for (pname, eid) in skipped if pname == name}
    applied, error = _fold(projection, events, mine, cur)
    if applied:
        moves.append((name, bucket, checkpoint, events[applied - 1].checkpoint))
        if touched is not None:
            touched[bucket].update(e.stream_id for e in events[:applied] if e.type in projection.handlers)
    if error:
        _park(cur, name, bucket, events[applied], error)
        return "failed"
    return "applied"


def _passable(
    passers: Sequence[Passer], found: Found, starts: Mapping[int, Checkpoint]
) -> list[tuple[Passer, int, Checkpoint]]:
    """The (passer, bucket)s whose lock this batch holds, that are neither failed nor paused, and
    whose checkpoint is not behind the bucket's batch's start (the batch has every event after it)."""
    chosen = []
    for passer in passers:
        for bucket, start in starts.items():
            row = found.get((passer.name, bucket))
            if row is None or not row[0] or row[3] or row[4]:
                continue
            checkpoint = Checkpoint(row[1], row[2])
            if checkpoint >= start:
                chosen.append((passer, bucket, checkpoint))
    return chosen


# (subscriber, bucket, its checkpoint, the checkpoint it moves to)
Move = tuple[str, int, Checkpoint, Checkpoint]


def _pass(
    passers: Sequence[Passer],
    found: Found,
    starts: Mapping[int, Checkpoint],
    pages: Mapping[int, list[RecordedEvent]],
    sid: str,
) -> tuple[dict[tuple[str, int], Move | None], dict[tuple[str, int], Move | None]]:
    """The (process manager, bucket)s this batch takes to its end: those it handles the events of
    (an `in_batch` manager with no recorded skips: handled and flushed here, by `Passer.handle`,
    once for every bucket of the batch), and those it carries past events they do not handle. Each
    with its checkpoint's move (None when it was at the batch's end already). A manager whose
    handling fails is neither: what its handlers read is rolled back to the batch's savepoint, and
    its own runs take the events."""
    handled: dict[tuple[str, int], Move | None] = {}
    carried: dict[tuple[str, int], Move | None] = {}
    to_handle: dict[str, list[tuple[int, Move | None, list[RecordedEvent]]]] = {}
    for passer, bucket, checkpoint in _passable(passers, found, starts):
        events = [e for e in pages[bucket] if e.checkpoint > checkpoint]
        move = (passer.name, bucket, checkpoint, events[-1].checkpoint) if events else None
        if not any(e.type in passer.handles for e in events):
            carried[passer.name, bucket] = move
        elif passer.handle is not None and not found[passer.name, bucket][5]:  # [5]: skips recorded in this bucket
            to_handle.setdefault(passer.name, []).append((bucket, move, events))
    for passer in passers:
        if passer.name not in to_handle or passer.handle is None:
            continue
        done = passer.handle([e for _, _, events in to_handle[passer.name] for e in events])
        if done:
            handled.update({(passer.name, bucket): move for bucket, move, _ in to_handle[passer.name]})
        elif done is not None:  # it failed: a read of its handlers that failed leaves nothing behind
            transaction.savepoint_rollback(sid)
    return handled, carried


def _fold_all(
    active: dict[str, Checkpoint],
    bucket: int,
    page: list[RecordedEvent],
    skipped: set,
    cur: CursorWrapper,
    touched: Mapping[int, set] | None,
) -> list[Move]:
    """Apply the bucket's page to every active projection from its checkpoint, with no savepoint
    of its own: the first event that fails raises (the caller rolls the whole group back). Returns
    the checkpoint moves."""
    moves: list[Move] = []
    for name, checkpoint in active.items():
        projection = projection_registry.get(name)
        events = [e for e in page if e.checkpoint > checkpoint]
        if not events:
            continue
        own = [e for e in events if e.type in projection.handlers and (name, e.event_id) not in skipped]
        if len(own) >= BULK_MIN_EVENTS:
            projection.rebuild_batch(own, cur, {})
            metrics.FOLDED.labels(projection.name).inc(len(own))
        else:
            for event in own:
                with applying(name, event):
                    projection.apply(event, cur)
        moves.append((name, bucket, checkpoint, events[-1].checkpoint))
        if touched is not None:
            touched[bucket].update(e.stream_id for e in own)
    return moves


def _fold(projection: Projection, events: list[RecordedEvent], skipped: set, cur: CursorWrapper) -> tuple[int, str]:
    """Apply a batch: folded in memory (`rebuild_batch`, each row written once) when the
    projection has many events in it, else one event at a time. A fold that raises is rolled back
    to its savepoint and the batch applied one event at a time, which finds the failing event and
    parks it exactly as before. Returns what `_apply` returns."""
    own = [e for e in events if e.type in projection.handlers and e.event_id not in skipped]
    if len(own) < BULK_MIN_EVENTS:
        return _apply(projection, events, skipped, cur)
    sid = transaction.savepoint()
    try:
        projection.rebuild_batch(own, cur, {})
    except Exception:
        transaction.savepoint_rollback(sid)
        log.info("projection %s: folding %d events failed; applying them one at a time", projection.name, len(own))
        return _apply(projection, events, skipped, cur)
    transaction.savepoint_commit(sid)
    metrics.FOLDED.labels(projection.name).inc(len(own))
    return len(events), ""


def _apply(projection: Projection, events: list[RecordedEvent], skipped: set, cur: CursorWrapper) -> tuple[int, str]:
    """Apply in a savepoint; on a failure, redo the events before it.
    Returns how many were applied and, when one failed, its traceback (redacted: it is shown to
    every viewer; the log line redacts it too, app/core/logs.py)."""
    sid = transaction.savepoint()
    for i, event in enumerate(events):
        if event.type not in projection.handlers or event.event_id in skipped:
            continue
        error = ""
        with applying(projection.name, event) as scope:
            try:
                projection.apply(event, cur)
            except Exception as exc:
                error = tracebacks.redacted(exc)
                scope.failed(exc)
                log.exception("projection %s failed on event %s", projection.name, event.event_id)
        if error:
            transaction.savepoint_rollback(sid)
            for earlier in events[:i]:
                if earlier.type in projection.handlers and earlier.event_id not in skipped:
                    projection.apply(earlier, cur)
            return i, error
    transaction.savepoint_commit(sid)
    return len(events), ""


def _send_move(cur: CursorWrapper, moves: list[Move]) -> None:
    """Compare-and-set the checkpoints of every (projection, bucket) that applied events, in one
    statement (in a pipeline, its rowcount is known once the round trip ends: `_check_moved`)."""
    if not moves:
        return
    cur.execute(
        "UPDATE projections_checkpoint c SET tx_id = m.tx_id, position = m.position, updated_at = now() "
        "FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
        "AS m(projection, bucket, old_tx, old_position, tx_id, position) "
        "WHERE c.projection = m.projection AND c.bucket = m.bucket AND c.tx_id = m.old_tx "
        "AND c.position = m.old_position",
        [
            [name for name, _, _, _ in moves],
            [bucket for _, bucket, _, _ in moves],
            [old.tx_id for _, _, old, _ in moves],
            [old.position for _, _, old, _ in moves],
            [new.tx_id for _, _, _, new in moves],
            [new.position for _, _, _, new in moves],
        ],
    )


def _check_moved(cur: CursorWrapper, moves: list[Move]) -> None:
    """Raise (the batch rolls back) unless `_send_move`'s statement, the cursor's last, moved every checkpoint."""
    if moves and cur.rowcount != len(moves):
        names = ", ".join(f"{name}/{bucket}" for name, bucket, _, _ in moves)
        raise RuntimeError(f"a checkpoint of {names} moved under us: batch rolled back")


def _park(cur: CursorWrapper, name: str, bucket: int, event: RecordedEvent, error: str) -> None:
    cur.execute(
        "UPDATE projections_checkpoint SET failed = true, error_event_id = %s, error_position = %s, "
        "error = %s, failed_at = %s WHERE projection = %s AND bucket = %s",
        [event.event_id, event.position, error, timezone.now(), name, bucket],
    )


HEADS = """
SELECT b, h.tx_id::text::int8, h.global_position FROM generate_series(0, %s) AS b
CROSS JOIN LATERAL (
    SELECT tx_id, global_position FROM eventstore_event e WHERE e.bucket = b
    ORDER BY tx_id DESC, global_position DESC LIMIT 1
) AS h
"""


def bucket_heads() -> dict[int, Checkpoint]:
    """The last committed event of every bucket that has one."""
    with connection.cursor() as cur:
        cur.execute(HEADS, [BUCKETS - 1])
        return {b: Checkpoint(tx, pos) for b, tx, pos in cur.fetchall()}


def lagging_buckets() -> list[int]:
    heads = bucket_heads()
    behind = set()
    for row in BucketCheckpoint.objects.filter(failed=False).values_list("bucket", "tx_id", "position"):
        head = heads.get(row[0])
        if head is not None and Checkpoint(row[1], row[2]) < head:
            behind.add(row[0])
    names = {p.name for p in projection_registry.all()}
    if names - set(BucketCheckpoint.objects.values_list("projection", flat=True).distinct()):
        behind.update(heads)  # a projection that never ran
    return sorted(behind)


def behind_horizon(bucket: int) -> bool:
    """Whether the bucket has committed events that readers cannot see yet (an older transaction
    is still open): the caller should look again shortly rather than wait for beat."""
    return bool(behind_horizon_of([bucket]))


def behind_horizon_of(buckets: Sequence[int]) -> list[int]:
    """Those of the buckets that have committed events readers cannot see yet (`behind_horizon`)."""
    if not buckets:
        return []
    with connection.cursor() as cur:
        cur.execute(
            "SELECT b FROM unnest(%s::int[]) AS b WHERE EXISTS (SELECT 1 FROM eventstore_event "
            "WHERE bucket = b AND tx_id >= pg_snapshot_xmin(pg_current_snapshot()))",
            [list(buckets)],
        )
        return [row[0] for row in cur.fetchall()]
