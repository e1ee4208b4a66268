"""Reads about projections: where they stand, lag, read-your-writes waits; and their controls,
which wake the buckets themselves once they commit (any bucket may have work again)."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from eventstore.records import BUCKETS, Checkpoint
from eventstore.store import EventStore
from projections import tracebacks, wakeups
from projections.base import projection_registry
from projections.models import BucketCheckpoint, ProjectionState, Rebuild, Skip
from projections.processes import process_registry
from projections.runner import ensure_checkpoints


def event_checkpoint(position: int) -> tuple[Checkpoint, int] | None:
    """The read-order place and bucket of the event at a global position (None if there is none)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tx_id::text::int8, bucket FROM eventstore_event WHERE global_position = %s "
            "AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
            [position],
        )
        row = cur.fetchone()
    return (Checkpoint(row[0], position), row[1]) if row else None


def applied(names: list[str], position: int) -> bool:
    """Whether every named projection has applied the event at `position` (and all before it in its bucket)."""
    found = event_checkpoint(position)
    if found is None:
        return False
    target, bucket = found
    rows = list(BucketCheckpoint.objects.filter(projection__in=names, bucket=bucket).values_list("tx_id", "position"))
    return len(rows) == len(names) and all(Checkpoint(tx, pos) >= target for tx, pos in rows)


OLDEST_UNAPPLIED = """
SELECT c.projection, min(o.recorded_at) FROM projections_checkpoint c
CROSS JOIN LATERAL (
    SELECT e.recorded_at FROM eventstore_event e
    WHERE e.bucket = c.bucket AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)
    ORDER BY e.tx_id, e.global_position LIMIT 1
) AS o
WHERE c.projection = ANY(%s) GROUP BY c.projection
"""

# Lag is counted exactly up to LAG_COUNT_MAX events per bucket checkpoint (distinct checkpoints
# once: the projections of a bucket usually stand at the same place); beyond that, estimated.
# Counting a backlog of a million events for every projection took 1.7 s a call.
LAG_COUNT_MAX = 200
BUCKET_LAG = """
WITH c AS (SELECT DISTINCT bucket, tx_id, position FROM projections_checkpoint WHERE projection = ANY(%s))
SELECT c.bucket, c.tx_id, c.position, a.n FROM c
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM (
        SELECT e.global_position FROM eventstore_event e
        WHERE e.bucket = c.bucket AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)
        ORDER BY e.tx_id, e.global_position LIMIT %s
    ) AS e
) AS a
WHERE a.n > 0
"""


def bucket_lags(cur: Any, names: list[str], head: int) -> dict[tuple[str, int], tuple[int, bool]]:
    """(name, bucket) -> (events after its checkpoint, whether that count is exact), for the
    buckets that lag. Up to LAG_COUNT_MAX events a checkpoint are counted; beyond, the estimate
    is the log's positions after the checkpoint (up to `head`, the log's last position) over
    BUCKETS: a stream's bucket is a hash of its id, so each bucket holds about as many events as
    any other. Summed over the buckets the estimate is close; one bucket's may be far off (a
    bucket with one busy stream)."""
    cur.execute(BUCKET_LAG, [names, LAG_COUNT_MAX])
    found: dict[tuple[int, int, int], tuple[int, bool]] = {}
    for bucket, tx_id, position, n in cur.fetchall():
        if n < LAG_COUNT_MAX:
            found[(bucket, tx_id, position)] = (n, True)
        else:
            found[(bucket, tx_id, position)] = (max(n, (head - position) // BUCKETS), False)
    out = {}
    for name, bucket, tx_id, position in BucketCheckpoint.objects.filter(projection__in=names).values_list(
        "projection", "bucket", "tx_id", "position"
    ):
        lag = found.get((bucket, tx_id, position))
        if lag is not None:
            out[(name, bucket)] = lag
    return out


def overview() -> list[dict[str, Any]]:
    subscribers = [*projection_registry.all(), *process_registry.all()]  # process managers too, told apart by "kind"
    names = [p.name for p in subscribers]
    kinds = {p.name: getattr(p, "kind", "projection") for p in subscribers}
    present = set(ProjectionState.objects.filter(name__in=names).values_list("name", flat=True))
    for p in subscribers:
        ensure_checkpoints(p, force=p.name not in present)
    head = EventStore().head().position  # the read-order index's last entry, not a scan
    with connection.cursor() as cur:
        lags = bucket_lags(cur, names, head)
        bucket_lag = {key: n for key, (n, _) in lags.items()}
        lag: dict[str, int] = {}
        for (name, _), n in bucket_lag.items():
            lag[name] = lag.get(name, 0) + n
        inexact = {name for (name, _), (_, exact) in lags.items() if not exact}
        cur.execute(OLDEST_UNAPPLIED, [names])
        oldest = dict(cur.fetchall())
    states = {s.name: s for s in ProjectionState.objects.filter(name__in=names)}
    rebuilds: dict[str, Rebuild] = {}
    for r in Rebuild.objects.filter(projection__in=names).order_by("pk"):
        rebuilds[r.projection] = r  # the latest of each
    now = timezone.now()
    out = []
    for name in names:
        rows = list(BucketCheckpoint.objects.filter(projection=name).order_by("bucket"))
        failed = [r for r in rows if r.failed]
        latest = rebuilds.get(name)
        rebuilding = latest is not None and latest.state == Rebuild.State.RUNNING
        status = (
            "failed"
            if failed
            else "paused"
            if states[name].paused
            else "rebuilding"
            if rebuilding
            else "catching_up"
            if lag.get(name, 0)
            else "running"
        )
        item: dict[str, Any] = {
            "name": name,
            "kind": kinds[name],
            "status": status,
            "version": states[name].version,
            "generation": states[name].generation,
            "position": min((r.position for r in rows), default=0),
            "head": head,
            "lag": lag.get(name, 0),
            "lag_exact": name not in inexact,
            "lag_seconds": round((now - oldest[name]).total_seconds(), 3) if name in oldest else 0.0,
            "buckets": [
                {
                    "bucket": r.bucket,
                    "position": r.position,
                    "lag": bucket_lag.get((name, r.bucket), 0),
                    "failed": r.failed,
                }
                for r in rows
            ],
        }
        if latest is not None:
            progress = latest.progress()
            progress["error"] = tracebacks.shown(progress["error"] or "") or None
            item["rebuild" if rebuilding else "last_rebuild"] = progress
        if failed:
            first = failed[0]
            item["error"] = {
                "bucket": first.bucket,
                "event_id": str(first.error_event_id) if first.error_event_id else None,
                "position": first.error_position,
                "traceback": tracebacks.shown(first.error),  # redacted: where it failed, never a message
                "failed_buckets": [r.bucket for r in failed],
            }
        out.append(item)
    return out


def set_paused(name: str, paused: bool) -> None:
    """Pause or resume a projection or process manager; a resume wakes every bucket."""
    subscriber = process_registry.get(name) if name in process_registry else projection_registry.get(name)
    ensure_checkpoints(subscriber, force=True)
    ProjectionState.objects.filter(name=name).update(paused=paused)
    if not paused:
        transaction.on_commit(wakeups.wake_all)


def retry(name: str) -> int:
    """Un-park the failed buckets: the runner tries their events again (after a fix)."""
    count = BucketCheckpoint.objects.filter(projection=name, failed=True).update(
        failed=False, error="", error_event_id=None, error_position=None, failed_at=None
    )
    transaction.on_commit(wakeups.wake_all)
    return count


@transaction.atomic
def skip(name: str, user: Any = None, reason: str = "") -> list[str]:
    """Record a skip of every parked event of the projection and un-park its buckets (retry wakes them)."""
    skipped = []
    for row in BucketCheckpoint.objects.select_for_update().filter(projection=name, failed=True):
        assert row.error_event_id is not None and row.error_position is not None  # parking names the event
        Skip.objects.get_or_create(
            projection=name,
            event_id=row.error_event_id,
            defaults={
                "position": row.error_position,
                "bucket": row.bucket,
                "skipped_by": user,
                "skipped_at": timezone.now(),
                "reason": reason,
            },
        )
        skipped.append(str(row.error_event_id))
    retry(name)
    return skipped


@transaction.atomic
def reset(name: str, to_position: int) -> None:
    """Replay from a position: every bucket's checkpoint goes back to just before it."""
    ensure_checkpoints(projection_registry.get(name), force=True)
    transaction.on_commit(wakeups.wake_all)  # not run if this raises: the transaction rolls back
    if to_position <= 0:
        BucketCheckpoint.objects.filter(projection=name).update(tx_id=0, position=0, updated_at=timezone.now())
        return
    found = event_checkpoint(to_position)
    if found is None:
        raise ValueError(f"no event at position {to_position}")
    target = found[0]
    before = Checkpoint(target.tx_id, target.position - 1)
    for row in BucketCheckpoint.objects.select_for_update().filter(projection=name):
        if Checkpoint(row.tx_id, row.position) > before:
            row.tx_id, row.position, row.updated_at = before.tx_id, before.position, timezone.now()
            row.save(update_fields=["tx_id", "position", "updated_at"])


# Each bucket's last event below the read horizon: an event committed later sorts after it.
START_AT_HEAD = """
UPDATE projections_checkpoint c SET tx_id = h.tx_id::text::int8, position = h.global_position, updated_at = now()
FROM generate_series(0, %s) AS b
CROSS JOIN LATERAL (
    SELECT e.tx_id, e.global_position FROM eventstore_event e
    WHERE e.bucket = b AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx_id DESC, e.global_position DESC LIMIT 1
) AS h
WHERE c.bucket = b AND c.projection = ANY(%s)
"""


def start_at_head(names: list[str] | None = None) -> None:
    """Every projection's and process manager's checkpoints (or only those named) at the head of
    its bucket, as if it had applied the log so far: for read models that start empty and must not
    replay history (a test worker's, after each test's flush, waits only for the events that come
    next), or a new integration publisher that must not publish history. Meant for idle buckets: a
    batch running meanwhile finds its checkpoint moved and rolls back."""
    subscribers = [s for s in [*projection_registry.all(), *process_registry.all()] if names is None or s.name in names]
    for subscriber in subscribers:
        ensure_checkpoints(subscriber, force=True)
    with connection.cursor() as cur:
        cur.execute(START_AT_HEAD, [BUCKETS - 1, [s.name for s in subscribers]])


def max_lag() -> int:
    """The largest number of events any projection has not applied yet (estimated beyond
    LAG_COUNT_MAX a bucket, see `bucket_lags`)."""
    names = [p.name for p in projection_registry.all()]
    head = EventStore().head().position
    with connection.cursor() as cur:
        totals: dict[str, int] = {}
        for (name, _), (n, _) in bucket_lags(cur, names, head).items():
            totals[name] = totals.get(name, 0) + n
    return max(totals.values(), default=0)
