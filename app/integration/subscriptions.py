"""Named persistent subscriptions with consumer groups (as Message DB's consumer groups and
KurrentDB's persistent subscriptions): the server keeps the checkpoint, the consumers share the
work by the log's 64 buckets.

- A subscription has one checkpoint per bucket, a (tx_id, position) pair of the read order, as a
  projection has (docs/design.md, "Buckets, checkpoints and the runner"): each stream lives in
  one bucket, so whoever holds a bucket sees each of its streams' events in order.
- A consumer holds leases on buckets. Every fetch renews its leases and its own liveness for
  `SUBSCRIPTION_LEASE_S`; a consumer that stops fetching loses both after that long. The live
  consumers share the buckets fairly: none keeps more than ceil(64 / live consumers), so a new
  consumer gets its share as soon as the others' next fetches release their surplus, or as
  their leases expire.
- A fetch hands out, for each bucket held, the events after the bucket's checkpoint in read
  order, below the read horizon (docs/design.md, "The read horizon"), so nothing committed later
  can land behind a checkpoint. Delivery is at least once: until an ack moves the checkpoint,
  every fetch (this consumer's, or the next holder's) hands the same events out again.
- An ack moves the checkpoints of buckets the consumer holds, forward only and never past what
  was handed out to it (nothing can be skipped by a mistaken cursor); a bucket it no longer holds
  refuses the whole ack (`LeaseLost`): its events are someone else's now.

Filters (category, types) are conditions on each bucket's walk, which is bounded (`SCAN` events
per fetch over all buckets, as `eventstore.timeline.forward` bounds the API's log read), so a
rare filter never walks the whole log in one statement; a bucket whose walk found nothing
matching moves its ack cursor past what it walked.

Fetches of one subscription are serialised by a row lock on the subscription, in a transaction
that only touches the subscription's rows and is short: the log is read after it commits.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from psycopg import sql

from app.integration.live import read_head
from app.integration.models import Subscription, SubscriptionBucket, SubscriptionConsumer
from eventstore.libpq import INT_LOADER, XID8_OID
from eventstore.records import BUCKETS, START, Checkpoint, RecordedEvent, bucket_of
from eventstore.retention import Policy
from eventstore.statements import COLUMNS, HORIZON, ORDERED_SCAN_ON, TABLE, filter_conditions, retention_conditions
from eventstore.store import EventStore

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")  # subscription and consumer names
SCAN = 10_000  # events one fetch walks at most, over all the buckets it reads
MIN_SCAN_PER_BUCKET = 100
MAX_FETCH = 1000
LAG_COUNT_MAX = 10_000  # lag is counted exactly up to this many events per bucket


class SubscriptionExists(Exception):
    pass


class UnknownSubscription(Exception):
    pass


class LeaseLost(Exception):
    """An ack named a bucket the consumer does not hold (any more)."""


class NotDelivered(ValueError):
    """An ack named a cursor past what was handed out: acking it would skip events."""


@dataclass
class Fetched:
    events: list[RecordedEvent]
    ack: dict[int, Checkpoint]  # per bucket: the checkpoint to ack once every event above is handled
    buckets: list[int]  # the buckets this consumer holds now
    lease_expires_at: datetime


@dataclass
class Held:
    bucket: int
    checkpoint: Checkpoint
    events: list[RecordedEvent] = field(default_factory=list)


# -- the subscriptions ---------------------------------------------------------------------------
def subscription_create(
    *, name: str, category: str = "", types: Sequence[str] = (), start: str = "beginning", user: Any = None
) -> Subscription:
    """A new subscription, its 64 checkpoints at the start of the log (`start="beginning"`), or at
    its head (`start="head"`: only events committed from now on). The head is the last event below
    the read horizon, so an append still in flight when the subscription is made is delivered."""
    at = read_head() if start == "head" else START
    try:
        with transaction.atomic():
            sub = Subscription.objects.create(name=name, category=category, types=list(types), created_by=user)
            SubscriptionBucket.objects.bulk_create(
                SubscriptionBucket(
                    subscription=sub,
                    bucket=b,
                    tx_id=at.tx_id,
                    position=at.position,
                    delivered_tx_id=at.tx_id,
                    delivered_position=at.position,
                )
                for b in range(BUCKETS)
            )
    except IntegrityError:
        raise SubscriptionExists(name) from None
    return sub


def subscription_delete(name: str) -> bool:
    deleted, _ = Subscription.objects.filter(name=name).delete()
    return deleted > 0


def subscription_get(name: str) -> Subscription:
    try:
        return Subscription.objects.get(name=name)
    except Subscription.DoesNotExist:
        raise UnknownSubscription(name) from None


BUCKET_LAG = """
SELECT b.bucket, (SELECT count(*) FROM (
    SELECT 1 FROM eventstore_event e
    WHERE e.bucket = b.bucket AND (e.tx_id, e.global_position) > (b.tx_id::text::xid8, b.position)
      AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
    LIMIT %s) AS after)
FROM integration_subscription_bucket b WHERE b.subscription_id = %s ORDER BY b.bucket
"""


def subscription_status(sub: Subscription) -> dict[str, Any]:
    """What a subscription's readers want to know: its filters, checkpoints, lag and consumers.
    `lag` counts the log's events after each bucket's checkpoint, before the filters (what the
    consumers still have to walk), exactly up to LAG_COUNT_MAX per bucket."""
    now = _db_now()
    rows = list(SubscriptionBucket.objects.filter(subscription=sub).order_by("bucket"))
    with connection.cursor() as cur:
        cur.execute(BUCKET_LAG, [LAG_COUNT_MAX, sub.name])
        lag = dict(cur.fetchall())
    consumers = list(SubscriptionConsumer.objects.filter(subscription=sub, expires_at__gt=now).order_by("consumer"))
    holding: dict[str, list[int]] = {}
    for r in rows:
        if r.consumer and r.lease_expires_at and r.lease_expires_at > now:
            holding.setdefault(r.consumer, []).append(r.bucket)
    lowest = min((Checkpoint(r.tx_id, r.position) for r in rows), default=Checkpoint(0, 0))
    return {
        "name": sub.name,
        "category": sub.category or None,
        "types": list(sub.types),
        "created_at": sub.created_at,
        "checkpoint": lowest.encode(),
        "lag": sum(lag.values()),
        "consumers": [
            {"consumer": c.consumer, "last_fetch_at": c.last_fetch_at, "buckets": holding.get(c.consumer, [])}
            for c in consumers
        ],
        "buckets": [
            {
                "bucket": r.bucket,
                "checkpoint": Checkpoint(r.tx_id, r.position).encode(),
                "position": r.position,
                "lag": lag.get(r.bucket, 0),
                "consumer": r.consumer if r.lease_expires_at and r.lease_expires_at > now else None,
            }
            for r in rows
        ],
    }


def subscription_list() -> list[dict[str, Any]]:
    return [subscription_status(s) for s in Subscription.objects.order_by("name")]


# -- leases --------------------------------------------------------------------------------------
def _db_now() -> datetime:
    """The database's clock: every web process measures leases by the same one."""
    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        row = cur.fetchone()
    assert row is not None
    return row[0]


def rebalance(
    rows: list[SubscriptionBucket], consumer: str, *, now: datetime, until: datetime, share: int
) -> tuple[list[SubscriptionBucket], list[SubscriptionBucket]]:
    """`consumer`'s buckets after a fetch at `now`, in place on `rows`: its live leases renewed up to
    `share`, its surplus given up, free buckets (never leased, or expired) taken up to `share`.
    Returns (its buckets, the rows that changed). A new lease hands out from the checkpoint again."""
    mine = [r for r in rows if r.consumer == consumer and r.lease_expires_at and r.lease_expires_at > now]
    free = [r for r in rows if r.consumer is None or r.lease_expires_at is None or r.lease_expires_at <= now]
    changed: list[SubscriptionBucket] = []
    for r in mine[share:]:  # the surplus: someone else's share now
        r.consumer, r.lease_expires_at = None, None
        changed.append(r)
    for r in free[: max(0, share - len(mine))]:
        r.consumer, r.delivered_tx_id, r.delivered_position = consumer, r.tx_id, r.position
        mine.append(r)
    kept = mine[:share]
    for r in kept:
        r.lease_expires_at = until
        changed.append(r)
    return kept, changed


def lease(name: str, consumer: str) -> tuple[Subscription, list[Held], datetime]:
    """Renew `consumer`'s liveness and leases on `name`, give up its surplus over a fair share or
    take free buckets up to it; the buckets it holds, with their checkpoints. One short transaction."""
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().filter(name=name).first()
        if sub is None:
            raise UnknownSubscription(name)
        now = _db_now()
        until = now + timedelta(seconds=settings.SUBSCRIPTION_LEASE_S)
        SubscriptionConsumer.objects.filter(subscription=sub, expires_at__lte=now).delete()
        SubscriptionConsumer.objects.update_or_create(
            subscription=sub, consumer=consumer, defaults={"last_fetch_at": now, "expires_at": until}
        )
        live = SubscriptionConsumer.objects.filter(subscription=sub).count()
        rows = list(SubscriptionBucket.objects.filter(subscription=sub).order_by("bucket"))
        kept, changed = rebalance(rows, consumer, now=now, until=until, share=math.ceil(BUCKETS / live))
        SubscriptionBucket.objects.bulk_update(
            changed, ["consumer", "lease_expires_at", "delivered_tx_id", "delivered_position"]
        )
    held = [Held(r.bucket, Checkpoint(r.tx_id, r.position)) for r in sorted(kept, key=lambda r: r.bucket)]
    return sub, held, until


# -- reading the held buckets ----------------------------------------------------------------------
# Per bucket, where a walk of at most %(scan)s events after its checkpoint ends, below the horizon
# (an index-only scan of the bucket's read-order index).
_WALK_ENDS = (
    "SELECT c.bucket, w.tx_id, w.global_position "
    "FROM unnest(%(buckets)s::int2[], %(txs)s::text[], %(positions)s::int8[]) AS c(bucket, tx, pos) "
    "CROSS JOIN LATERAL (SELECT tx_id, global_position FROM ("
    "SELECT tx_id, global_position FROM {table} WHERE bucket = c.bucket "
    "AND (tx_id, global_position) > (c.tx::xid8, c.pos) AND {horizon} "
    "ORDER BY tx_id, global_position LIMIT %(scan)s) AS s ORDER BY tx_id DESC, global_position DESC LIMIT 1) AS w"
)
# The matches of each bucket up to its walk's end (below the horizon of the walk: no event can
# appear there any more), at most %(limit)s per bucket.
_MATCHES = (
    "SELECT m.* FROM unnest(%(buckets)s::int2[], %(txs)s::text[], %(positions)s::int8[], "
    "%(end_txs)s::text[], %(end_positions)s::int8[]) AS c(bucket, tx, pos, end_tx, end_pos) "
    "CROSS JOIN LATERAL (SELECT {cols} FROM {table} WHERE bucket = c.bucket "
    "AND (tx_id, global_position) > (c.tx::xid8, c.pos) "
    "AND (tx_id, global_position) <= (c.end_tx::xid8, c.end_pos) {filters}"
    "ORDER BY tx_id, global_position LIMIT %(limit)s) AS m ORDER BY m.tx_id, m.global_position"
)


@functools.lru_cache(maxsize=16)
def _statements(categories: bool, types: bool, policy: Policy = ()) -> tuple[sql.Composed, sql.Composed]:
    conds = [*filter_conditions(categories, types, False), *retention_conditions(policy)]
    filters = sql.SQL("").join(sql.SQL("AND {} ").format(c) for c in conds)
    return (
        sql.SQL(_WALK_ENDS).format(table=TABLE, horizon=HORIZON),
        sql.SQL(_MATCHES).format(cols=COLUMNS, table=TABLE, filters=filters),
    )


def read_held(
    held: list[Held], *, limit: int, category: str = "", types: Sequence[str] = (), store: EventStore | None = None
) -> tuple[list[RecordedEvent], dict[int, Checkpoint]]:
    """Up to `limit` events of the held buckets after their checkpoints, in read order (so each
    stream's in version order), and per bucket the checkpoint an ack of all of them reaches: the
    last event handed out, or, where every match up to the walk's end was handed out, that end."""
    if not held:
        return [], {}
    store = store or EventStore()
    walk_ends, matches = _statements(bool(category), bool(types), store.retention)
    params: dict[str, Any] = {
        "buckets": [h.bucket for h in held],
        "txs": [str(h.checkpoint.tx_id) for h in held],
        "positions": [h.checkpoint.position for h in held],
        "scan": max(MIN_SCAN_PER_BUCKET, SCAN // len(held)),
        "limit": limit,
        "categories": [category] if category else [],
        "types": list(types),
    }
    with store.cursor() as cur, cur.connection.transaction():  # the settings below end with it
        cur.adapters.register_loader(XID8_OID, INT_LOADER)
        cur.execute(ORDERED_SCAN_ON)
        ends = {b: Checkpoint(tx, pos) for b, tx, pos in cur.execute(walk_ends, params).fetchall()}
        if not ends:
            return [], {}
        walked = [h for h in held if h.bucket in ends]
        params.update(
            buckets=[h.bucket for h in walked],
            txs=[str(h.checkpoint.tx_id) for h in walked],
            positions=[h.checkpoint.position for h in walked],
            end_txs=[str(ends[h.bucket].tx_id) for h in walked],
            end_positions=[ends[h.bucket].position for h in walked],
        )
        with store.read_cursor() as read:
            read.execute(matches, params)
            found = store.fetch_events(read)
    events = found[:limit]
    per_bucket: dict[int, list[RecordedEvent]] = {}
    for e in found:
        per_bucket.setdefault(bucket_of(e.stream_id), []).append(e)
    ack: dict[int, Checkpoint] = {}
    for bucket, end in ends.items():
        mine = per_bucket.get(bucket, [])
        given = [e for e in mine if e.checkpoint <= events[-1].checkpoint] if events else []
        if len(given) == len(mine) and len(mine) < limit:  # every match up to the walk's end went out
            ack[bucket] = end
        elif given:
            ack[bucket] = given[-1].checkpoint
    return events, ack


def _delivered(name: str, consumer: str, ack: dict[int, Checkpoint]) -> None:
    """Remember how far each bucket was handed out to its holder: an ack may go that far."""
    if not ack:
        return
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE integration_subscription_bucket b SET delivered_tx_id = d.tx, delivered_position = d.pos "
            "FROM unnest(%s::int2[], %s::int8[], %s::int8[]) AS d(bucket, tx, pos) "
            "WHERE b.subscription_id = %s AND b.bucket = d.bucket AND b.consumer = %s "
            "AND (b.delivered_tx_id, b.delivered_position) < (d.tx, d.pos)",
            [list(ack), [c.tx_id for c in ack.values()], [c.position for c in ack.values()], name, consumer],
        )


def fetch(name: str, consumer: str, *, limit: int) -> Fetched:
    """One fetch: renew and rebalance the leases, read the held buckets, remember what went out."""
    sub, held, until = lease(name, consumer)
    events, ack = read_held(held, limit=limit, category=sub.category, types=sub.types)
    _delivered(name, consumer, ack)
    return Fetched(events, ack, [h.bucket for h in held], until)


# -- acks ------------------------------------------------------------------------------------------
EVENT_BUCKET = sql.SQL(
    "SELECT bucket FROM {table} WHERE tx_id = %s::text::xid8 AND global_position = %s AND {horizon}"
).format(table=TABLE, horizon=HORIZON)


def bucket_of_cursor(cursor: Checkpoint) -> int:
    """The bucket of the event a cursor names (a probe of the read-order index)."""
    with connection.cursor() as cur:
        cur.execute(EVENT_BUCKET.as_string(None), [str(cursor.tx_id), cursor.position])
        row = cur.fetchone()
    if row is None:
        raise NotDelivered("no event of the log is at that cursor")
    return int(row[0])


def ack(name: str, consumer: str, positions: dict[int, Checkpoint]) -> dict[int, Checkpoint]:
    """Move the named buckets' checkpoints to the given cursors (forward only), all or none; the
    checkpoints after it."""
    with transaction.atomic():
        if not Subscription.objects.filter(name=name).exists():
            raise UnknownSubscription(name)
        now = _db_now()
        rows = {
            r.bucket: r
            for r in SubscriptionBucket.objects.select_for_update().filter(subscription_id=name, bucket__in=positions)
        }
        for bucket, cursor in sorted(positions.items()):
            r = rows.get(bucket)
            if r is None or r.consumer != consumer or r.lease_expires_at is None or r.lease_expires_at <= now:
                raise LeaseLost(f"consumer {consumer!r} does not hold bucket {bucket} of {name!r}")
            if cursor > Checkpoint(r.delivered_tx_id, r.delivered_position):
                raise NotDelivered(f"bucket {bucket} was not handed out as far as that cursor")
        moved = []
        for bucket, cursor in positions.items():
            r = rows[bucket]
            if cursor > Checkpoint(r.tx_id, r.position):
                r.tx_id, r.position, r.acked_at = cursor.tx_id, cursor.position, now
                moved.append(r)
        SubscriptionBucket.objects.bulk_update(moved, ["tx_id", "position", "acked_at"])
    return {b: Checkpoint(rows[b].tx_id, rows[b].position) for b in positions}


def is_name(value: str) -> bool:
    return bool(NAME.match(value))
