"""The log for people: newest first (the console's timeline) and counted over recent time (its
dashboard). Read-only, never in the append path, and cheap on a log of millions of events:

- `newest` walks the read-order index `(tx_id, global_position)` backwards (or the category's
  index), below the horizon like `EventStore.read_all`, between two cursors, and stops at the
  limit. Its cursors are the API's (`Checkpoint.encode`), so paging never skips or repeats an
  event, and "what is newer than the first row shown" is the same read with a lower bound.
- `forward` is the API's log read (`GET /api/events`): `EventStore.read_all` where an index
  serves the filter (none, or a category), and otherwise (a type, a correlation id: filters on the
  walk, which could otherwise read the whole log for a rare match) a walk of at most `LOG_SCAN`
  events per page. A page that reaches that bound before `limit` matches is `partial`, and its
  checkpoint is the last event it looked at, so the next page goes on from there.
- `activity` counts the last minutes per time slot and event type through the BRIN index on
  `recorded_at`, which only visits the table's newest pages.
- `totals` counts events and streams exactly on a small log and from the planner's statistics on
  a big one (`exact` says which).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import errors as pg_errors
from psycopg import sql

from eventstore.libpq import INT_LOADER, XID8_OID
from eventstore.records import Checkpoint, RecordedEvent
from eventstore.retention import Policy
from eventstore.statements import COLUMNS, HORIZON, ORDERED_SCAN_ON, TABLE, filter_conditions, retention_conditions
from eventstore.store import EventStore

BROWSE_TIMEOUT_MS = 3000
STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"
EXACT_COUNT_BELOW = 200_000  # rows (by the planner's estimate) below which counting costs a blink
TOP = Checkpoint(2**63 - 1, 2**63 - 1)
LOG_SCAN = 10_000  # events a filtered page of the API's log looks at, at most (a few ms on a warm cache)


class TooBroad(Exception):
    """A browsing read gave up (statement timeout) rather than scan a big log for rare matches."""


class Filters(NamedTuple):
    categories: Sequence[str] = ()
    types: Sequence[str] = ()
    stream_id: UUID | None = None
    correlation_id: str | None = None
    recorded_from: datetime | None = None
    recorded_to: datetime | None = None


class Totals(NamedTuple):
    events: int
    streams: int
    exact: bool


@functools.lru_cache(maxsize=64)
def _newest_statement(lower: bool, filters: tuple[bool, ...], policy: Policy = ()) -> sql.Composed:
    categories, types, stream, correlation, recorded_from, recorded_to = filters
    conds: list[sql.Composable] = [sql.SQL("(tx_id, global_position) < (%(tx)s::text::xid8, %(pos)s)"), HORIZON]
    conds += retention_conditions(policy)
    if lower:
        conds.append(sql.SQL("(tx_id, global_position) > (%(after_tx)s::text::xid8, %(after_pos)s)"))
    conds += filter_conditions(categories, types, correlation)
    if stream:
        conds.append(sql.SQL("stream_id = %(stream_id)s"))
    if recorded_from:
        conds.append(sql.SQL("recorded_at >= %(recorded_from)s"))
    if recorded_to:
        conds.append(sql.SQL("recorded_at < %(recorded_to)s"))
    return sql.SQL(
        "SELECT {cols} FROM {table} WHERE {conds} ORDER BY tx_id DESC, global_position DESC LIMIT %(limit)s"
    ).format(cols=COLUMNS, table=TABLE, conds=sql.SQL(" AND ").join(conds))


def newest(
    store: EventStore | None = None,
    *,
    before: Checkpoint | None = None,
    after: Checkpoint | None = None,
    limit: int = 50,
    filters: Filters | None = None,
    timeout_ms: int = BROWSE_TIMEOUT_MS,
) -> list[RecordedEvent]:
    """Up to `limit` events, newest first, strictly between `after` and `before` in read order and
    below the horizon. The next (older) page starts before the last event's checkpoint.

    A stream or a category narrows the index walk; type, correlation id and time are filters on
    it, so a rare match deep in a big log takes long: past `timeout_ms` this raises TooBroad."""
    store = store or EventStore()
    filters = filters or Filters()
    upper = before or TOP
    params: dict[str, Any] = {"tx": str(upper.tx_id), "pos": upper.position, "limit": limit}
    if after is not None:
        params.update(after_tx=str(after.tx_id), after_pos=after.position)
    params.update(
        categories=list(filters.categories),
        types=list(filters.types),
        stream_id=filters.stream_id,
        correlation=filters.correlation_id,
        recorded_from=filters.recorded_from,
        recorded_to=filters.recorded_to,
    )
    shape = (
        bool(filters.categories),
        bool(filters.types),
        filters.stream_id is not None,
        bool(filters.correlation_id),
        filters.recorded_from is not None,
        filters.recorded_to is not None,
    )
    with store.read_cursor() as cur:
        try:
            with cur.connection.transaction():  # SET LOCAL: the timeout ends with this read
                cur.execute(STATEMENT_TIMEOUT, [str(timeout_ms)])
                cur.execute(_newest_statement(after is not None, shape, store.retention), params)
        except pg_errors.QueryCanceled:
            raise TooBroad("the filters match too few of the newest events to find them quickly") from None
        return store.fetch_events(cur)


class ForwardPage(NamedTuple):
    events: list[RecordedEvent]
    checkpoint: Checkpoint  # where the next page starts: the last event read or, if fewer, looked at
    partial: bool  # the walk reached LOG_SCAN before `limit` matches: more may follow at once


# The end of one page's walk: the LOG_SCAN-th event after the checkpoint in read order (or the
# last one below the horizon), and how many were walked: an index-only scan of the read order.
_SCAN_END = (
    "SELECT tx_id, global_position, count(*) OVER () FROM (SELECT tx_id, global_position FROM {table} "
    "WHERE {conds} ORDER BY tx_id, global_position LIMIT %(scan)s) AS s "
    "ORDER BY tx_id DESC, global_position DESC LIMIT 1"
)
# The matches up to that end. Below the horizon of the walk, no event can appear any more, so the
# second statement reads exactly what the first walked over.
_MATCHES = (
    "SELECT {cols} FROM {table} WHERE {conds} "
    "AND (tx_id, global_position) <= (%(end_tx)s::text::xid8, %(end_pos)s) "
    "ORDER BY tx_id, global_position LIMIT %(limit)s"
)


@functools.lru_cache(maxsize=16)
def _forward_statements(
    categories: bool, types: bool, correlation: bool, policy: Policy = ()
) -> tuple[sql.Composed, sql.Composed]:
    after = sql.SQL("(tx_id, global_position) > (%(tx)s::text::xid8, %(pos)s)")
    walk = sql.SQL(" AND ").join([after, HORIZON, *filter_conditions(categories, False, False)])
    kept = retention_conditions(policy)
    match = sql.SQL(" AND ").join([after, *filter_conditions(categories, types, correlation), *kept])
    return (
        sql.SQL(_SCAN_END).format(table=TABLE, conds=walk),
        sql.SQL(_MATCHES).format(cols=COLUMNS, table=TABLE, conds=match),
    )


def forward(
    store: EventStore | None = None,
    *,
    after: Checkpoint,
    limit: int,
    categories: Sequence[str] = (),
    types: Sequence[str] = (),
    correlation_id: str | None = None,
) -> ForwardPage:
    """Up to `limit` events after `after` in read order, below the horizon, optionally of one of
    `categories`, one of `types` and with `correlation_id`. See the module's doc for the bound."""
    store = store or EventStore()
    if not types and not correlation_id:  # an index walk that every row matches: bounded by the limit
        page = store.read_all(after, limit=limit, categories=list(categories) or None)
        return ForwardPage(page.events, page.checkpoint, partial=False)
    scan_end, matches = _forward_statements(bool(categories), bool(types), bool(correlation_id), store.retention)
    params: dict[str, Any] = {
        "tx": str(after.tx_id),
        "pos": after.position,
        "scan": LOG_SCAN,
        "limit": limit,
        "categories": list(categories),
        "types": list(types),
        "correlation": correlation_id,
    }
    with store.cursor() as cur, cur.connection.transaction():  # the settings below end with it
        cur.adapters.register_loader(XID8_OID, INT_LOADER)
        cur.execute(ORDERED_SCAN_ON)
        end = cur.execute(scan_end, params).fetchone()
        if end is None:  # nothing new below the horizon
            return ForwardPage([], after, partial=False)
        end_tx, end_pos, walked = end
        with store.read_cursor() as read:
            read.execute(matches, {**params, "end_tx": str(end_tx), "end_pos": end_pos})
            events = store.fetch_events(read)
    if len(events) == limit:
        return ForwardPage(events, events[-1].checkpoint, partial=False)
    return ForwardPage(events, Checkpoint(end_tx, end_pos), partial=walked >= LOG_SCAN)


ACTIVITY = sql.SQL(
    "SELECT date_bin(make_interval(secs => %(slot)s), recorded_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS slot, "
    "event_type, count(*) FROM {table} WHERE recorded_at >= %(since)s GROUP BY 1, 2 ORDER BY 1, 2"
).format(table=TABLE)


def activity(store: EventStore | None = None, *, since: datetime, slot: timedelta) -> list[tuple[datetime, str, int]]:
    """(slot start, event type, events recorded in it) from `since` on, slots aligned to multiples
    of `slot` since 2000-01-01 UTC (so a slot keeps its start from one call to the next)."""
    store = store or EventStore()
    params = {"slot": slot.total_seconds(), "since": since}
    with store.cursor() as cur:
        return cur.execute(ACTIVITY, params).fetchall()


ESTIMATED_ROWS = sql.SQL("SELECT reltuples::bigint FROM pg_class WHERE oid = {name}::regclass").format(
    name=sql.Literal("eventstore_event")
)
# n_distinct: a count, or (negative) a fraction of the rows.
ESTIMATED_STREAMS = sql.SQL(
    "SELECT n_distinct FROM pg_stats WHERE schemaname = current_schema() "
    "AND tablename = 'eventstore_event' AND attname = 'stream_id'"
)
EXACT = sql.SQL("SELECT count(*), count(*) FILTER (WHERE version = 1) FROM {table}").format(table=TABLE)


def totals(store: EventStore | None = None) -> Totals:
    """Events and streams in the log: exact while it is small, else the planner's estimate."""
    store = store or EventStore()
    with store.cursor() as cur:
        estimate = cur.execute(ESTIMATED_ROWS).fetchone()
        assert estimate is not None  # the table exists: it has a pg_class row
        rows = estimate[0]
        if rows < EXACT_COUNT_BELOW:  # includes -1: never analysed, so surely young
            exact = cur.execute(EXACT).fetchone()
            assert exact is not None  # aggregates without GROUP BY: always one row
            events, streams = exact
            return Totals(events, streams, exact=True)
        found = cur.execute(ESTIMATED_STREAMS).fetchone()
    distinct = found[0] if found else 0
    streams = round(-distinct * rows) if distinct < 0 else round(distinct)
    return Totals(rows, streams, exact=False)
