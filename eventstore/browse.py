"""Browsing the log: the reads behind the console's stream finder, event detail and catalog.

Every query here is bounded by an index and a limit, so it stays cheap on a log of millions of
events: categories by a skip scan of the (category, ...) index, a category's streams by walking
that index backwards, an event by its unique id, and its causation and correlation neighbours by
a window of positions around it (the BRIN index on positions) rather than by an index on the
metadata, which every append would pay for. Counts by category or event type are exact on a
small log and estimated from the planner's statistics on a big one (`Counts.exact` says which).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID

from psycopg import sql

from eventstore.errors import AggregateNotFound
from eventstore.inputs import text_problem
from eventstore.libpq import INT_LOADER, XID8_OID
from eventstore.records import Checkpoint, RecordedEvent
from eventstore.repository import Repository
from eventstore.retention import Policy
from eventstore.statements import ARCHIVE, COLUMNS, TABLE, retention_conditions
from eventstore.store import EventStore

# Below this many rows (by the planner's estimate) counting them exactly costs less than a blink.
EXACT_COUNT_BELOW = 200_000
# How far from an event (in positions) its effects and correlated events are looked for: mostly
# after it (what it caused comes later), a little before (what began its correlation). About 20 ms
# on a warm cache; the page can ask for a window ten times as wide.
NEIGHBOURS_BEFORE = 5_000
NEIGHBOURS_AFTER = 15_000
NEIGHBOUR_LIMIT = 100
# How many of a category's events one page of its streams may look at.
STREAM_SCAN = 20_000


class StreamSummary(NamedTuple):
    stream_id: UUID
    category: str
    version: int
    created_at: datetime  # of version 1
    last_recorded_at: datetime  # of the current version
    cursor: str  # where the next (older) page of its category starts


class StreamPage(NamedTuple):
    streams: list[StreamSummary]
    older: str | None  # the cursor of the next (older) page; None at the category's first stream


class Counts(NamedTuple):
    by_key: dict[str, int]
    exact: bool


class Neighbours(NamedTuple):
    """Events near one event: what it caused, and what shares its correlation id."""

    caused: list[RecordedEvent]
    correlated: list[RecordedEvent]
    window: tuple[int, int]  # the positions that were searched (inclusive)
    truncated: bool  # the limit was reached: there may be more


# A skip scan: one index probe per distinct category instead of reading every row.
CATEGORIES = sql.SQL(
    "WITH RECURSIVE c(category) AS ("
    " (SELECT category FROM {table} ORDER BY category LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT e.category FROM {table} e WHERE e.category > c.category ORDER BY e.category LIMIT 1)"
    " FROM c WHERE c.category IS NOT NULL"
    ") SELECT category FROM c WHERE category IS NOT NULL"
).format(table=TABLE)

# A category's streams, newest first: an index in read order walked backwards from the cursor (the
# category's, or for a category of most events the log's: the planner's choice),
# version 1 only, at most STREAM_SCAN rows (a category whose streams are long, or were all made long
# ago, must not cost a walk through the whole log); each stream's current version from the
# primary key.
STREAMS_OF = sql.SQL(
    "SELECT f.stream_id, f.category, l.version, f.recorded_at, l.recorded_at, f.tx_id, f.global_position "
    "FROM (SELECT * FROM (SELECT stream_id, category, version, recorded_at, tx_id, global_position FROM {table} "
    "      WHERE category = %(category)s AND (tx_id, global_position) < (%(tx)s::text::xid8, %(pos)s) "
    "      ORDER BY tx_id DESC, global_position DESC LIMIT %(scan)s) AS s "
    "      WHERE s.version = 1 ORDER BY s.tx_id DESC, s.global_position DESC LIMIT %(limit)s) AS f "
    "CROSS JOIN LATERAL (SELECT version, recorded_at FROM {table} "
    "      WHERE stream_id = f.stream_id ORDER BY version DESC LIMIT 1) AS l "
    "ORDER BY f.tx_id DESC, f.global_position DESC"
).format(table=TABLE)
# The last row such a scan looked at, if it stopped at its bound (an index-only scan).
SCAN_END = sql.SQL(
    "SELECT tx_id, global_position FROM {table} "
    "WHERE category = %(category)s AND (tx_id, global_position) < (%(tx)s::text::xid8, %(pos)s) "
    "ORDER BY tx_id DESC, global_position DESC OFFSET %(scan)s - 1 LIMIT 1"
).format(table=TABLE)

# A stream's last event, in the events table or (an archived stream) the archive.
STREAM_HEAD = sql.SQL(
    "SELECT * FROM ((SELECT category, version, recorded_at FROM {table} WHERE stream_id = %(s)s "
    "ORDER BY version DESC LIMIT 1) UNION ALL (SELECT category, version, recorded_at FROM {archive} "
    "WHERE stream_id = %(s)s ORDER BY version DESC LIMIT 1)) AS h ORDER BY version DESC LIMIT 1"
).format(table=TABLE, archive=ARCHIVE)

IS_ARCHIVED = sql.SQL("SELECT 1 FROM {archive} WHERE stream_id = %s LIMIT 1").format(archive=ARCHIVE)

# Streams whose id starts with a hex prefix: a range of the primary key.
STREAMS_IN_RANGE = sql.SQL(
    "SELECT DISTINCT ON (stream_id) stream_id FROM {table} "
    "WHERE stream_id BETWEEN %s AND %s ORDER BY stream_id LIMIT %s"
).format(table=TABLE)


@functools.lru_cache(maxsize=8)
def event_statement(policy: Policy) -> sql.Composed:
    """One event by id, hot or archived, unless it has expired (retention: it is gone for every
    reader at once, before `enforce_retention` deletes it)."""
    kept = sql.SQL("").join(sql.SQL(" AND ") + cond for cond in retention_conditions(policy))
    return sql.SQL(
        "SELECT {cols} FROM {table} WHERE event_id = %(id)s{kept} "
        "UNION ALL SELECT {cols} FROM {archive} WHERE event_id = %(id)s{archive_kept}"
    ).format(
        cols=COLUMNS,
        table=TABLE,
        archive=ARCHIVE,
        kept=kept,
        archive_kept=sql.SQL("").join(sql.SQL(" AND ") + cond for cond in retention_conditions(policy, ARCHIVE)),
    )


@functools.lru_cache(maxsize=8)
def neighbours_statement(policy: Policy) -> sql.Composed:
    kept = sql.SQL("").join(sql.SQL(" AND ") + cond for cond in retention_conditions(policy))
    return sql.SQL(
        "SELECT {cols} FROM {table} WHERE global_position BETWEEN %(lo)s AND %(hi)s "
        "AND (metadata->>'causation_id' = %(id)s OR metadata->>'correlation_id' = %(correlation)s){kept} "
        "ORDER BY global_position LIMIT %(limit)s"
    ).format(cols=COLUMNS, table=TABLE, kept=kept)


ESTIMATED_ROWS = sql.SQL("SELECT reltuples::bigint FROM pg_class WHERE oid = {table}::regclass").format(
    table=sql.Literal("eventstore_event")
)
ESTIMATED_BY = sql.SQL(
    "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
    "WHERE schemaname = current_schema() AND tablename = 'eventstore_event' AND attname = %s"
)


@functools.lru_cache(maxsize=8)
def _exact_by(column: str, policy: Policy) -> sql.Composed:
    """Events per `column`, expired ones left out (retention)."""
    kept = retention_conditions(policy)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(kept) if kept else sql.SQL("")
    return sql.SQL("SELECT {col}, count(*) FROM {table}{where} GROUP BY {col}").format(
        col=sql.Identifier(column), table=TABLE, where=where
    )


class LogBrowser:
    """Read-only views of the log for people: cheap on a big log, never in the append path."""

    def __init__(self, store: EventStore | None = None) -> None:
        self.store = store or EventStore()

    def categories(self) -> list[str]:
        with self.store.cursor() as cur:
            return [row[0] for row in cur.execute(CATEGORIES)]

    def counts(self, column: Literal["category", "event_type"]) -> Counts:
        """Events per category or per type: exact on a small log (expired events left out), else the
        planner's estimate (of what is stored: expired events count until `enforce_retention`)."""
        with self.store.cursor() as cur:
            estimate = cur.execute(ESTIMATED_ROWS).fetchone()
            assert estimate is not None  # the table exists: it has a pg_class row
            rows = estimate[0]
            if rows < EXACT_COUNT_BELOW:  # includes -1: never analysed, so surely young
                return Counts(dict(cur.execute(_exact_by(column, self.store.retention)).fetchall()), exact=True)
            found = cur.execute(ESTIMATED_BY, [column]).fetchone()
        if not found or found[0] is None:
            return Counts({}, exact=False)
        values, freqs = found
        return Counts({v: round(f * rows) for v, f in zip(values, freqs, strict=True)}, exact=False)

    def streams(self, category: str, *, before: Checkpoint | None = None, limit: int = 50) -> StreamPage:
        """A category's streams, newest first, below `before` (the cursor of the page before).

        Each page looks at no more than STREAM_SCAN of the category's events; a page may then
        hold fewer streams than `limit` and still have an `older` cursor to go on from."""
        if text_problem(category):  # no category holds a NUL: PostgreSQL could not even take the query
            return StreamPage([], None)
        upper = before or Checkpoint(2**63 - 1, 2**63 - 1)
        params = {
            "category": category,
            "tx": str(upper.tx_id),
            "pos": upper.position,
            "limit": limit + 1,
            "scan": STREAM_SCAN,
        }
        with self.store.cursor() as cur:
            cur.adapters.register_loader(XID8_OID, INT_LOADER)
            rows = cur.execute(STREAMS_OF, params).fetchall()
            found = [
                StreamSummary(stream_id, category, version, created, last, Checkpoint(tx_id, position).encode())
                for stream_id, category, version, created, last, tx_id, position in rows
            ]
            if len(found) > limit:
                return StreamPage(found[:limit], found[limit - 1].cursor)
            end = cur.execute(SCAN_END, params).fetchone()
        return StreamPage(found, Checkpoint(*end).encode() if end else None)

    def stream_head(self, stream_id: UUID) -> tuple[str, int, datetime] | None:
        """(category, current version, time of the current version), or None for no such stream."""
        with self.store.cursor() as cur:
            return cur.execute(STREAM_HEAD, {"s": stream_id}).fetchone()

    def archived(self, stream_id: UUID) -> bool:
        """Whether the stream's events were moved to the archive (see `EventStore.archive`)."""
        with self.store.cursor() as cur:
            return cur.execute(IS_ARCHIVED, [stream_id]).fetchone() is not None

    def streams_with_prefix(self, prefix: str, limit: int = 20) -> list[UUID]:
        """Streams whose id starts with `prefix` (hex digits, dashes ignored)."""
        digits = prefix.replace("-", "").lower()
        if not digits or len(digits) > 32 or any(c not in "0123456789abcdef" for c in digits):
            return []
        low, high = UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))
        with self.store.cursor() as cur:
            return [row[0] for row in cur.execute(STREAMS_IN_RANGE, [low, high, limit])]

    def event(self, event_id: UUID) -> RecordedEvent | None:
        with self.store.read_cursor() as cur:
            cur.execute(event_statement(self.store.retention), {"id": event_id})
            events = self.store.fetch_events(cur)
        return events[0] if events else None

    def neighbours(self, event: RecordedEvent, *, widen: int = 1) -> Neighbours:
        """The events `event` caused (their causation id is its id) and those sharing its correlation
        id, within a window of positions around it (`widen` times the usual): a process reacts soon
        after its cause, and a window keeps the scan bounded (a BRIN range of the table) where an
        index on the metadata would tax every append."""
        lo = max(1, event.position - NEIGHBOURS_BEFORE * widen)
        hi = event.position + NEIGHBOURS_AFTER * widen
        correlation = event.metadata.get("correlation_id")
        params = {
            "lo": lo,
            "hi": hi,
            "id": str(event.event_id),
            "correlation": str(correlation) if correlation else None,
            "limit": NEIGHBOUR_LIMIT + 1,
        }
        with self.store.read_cursor() as cur:
            cur.execute(neighbours_statement(self.store.retention), params)
            found = self.store.fetch_events(cur)
        truncated = len(found) > NEIGHBOUR_LIMIT
        found = found[:NEIGHBOUR_LIMIT]
        me = str(event.event_id)
        caused = [e for e in found if e.metadata.get("causation_id") == me and e.event_id != event.event_id]
        correlated = [e for e in found if correlation and e.metadata.get("correlation_id") == str(correlation)]
        return Neighbours(caused, correlated, (lo, hi), truncated)


class StatePoint(NamedTuple):
    """An aggregate at one version: its state, the state before, and the event between them."""

    version: int
    current: int  # the stream's current version
    event: RecordedEvent  # the event that made `version`
    state: dict[str, Any]
    previous: dict[str, Any]  # before that event (the initial state for version 1)
    changed: frozenset[str]  # the fields that differ between the two


def state_at(
    kind: type,
    stream_id: UUID,
    *,
    version: int | None = None,
    at: datetime | None = None,
    store: EventStore | None = None,
) -> StatePoint:
    """The time machine: `kind`'s state at `version` (clamped to the stream's versions), or as it
    was at time `at`, with the state before that version, so that a page can show what changed.

    Loads the previous version through the repository (snapshots included) and folds the one
    event that follows, the same fold every load uses. Raises AggregateNotFound when the stream
    has no events (at that time)."""
    repo: Repository[Any] = Repository(kind, store or EventStore())
    current = repo.store.stream_version(stream_id)
    if current == 0:
        raise AggregateNotFound(f"no stream {stream_id}")
    if at is not None:
        found = repo.store.read_stream(stream_id, recorded_until=at, backwards=True, limit=1)
    else:
        wanted = current if version is None else min(max(version, 1), current)
        found = repo.store.read_stream(stream_id, from_version=wanted, to_version=wanted)
    if not found:
        raise AggregateNotFound(f"{stream_id} had no events at {at}")
    event = found[0]
    agg: Any = kind
    previous = agg.initial_state() if event.version == 1 else repo.load(stream_id, version=event.version - 1).state
    state, _ = repo.fold(previous, event.version - 1, [event])
    before, after = previous.model_dump(mode="json"), state.model_dump(mode="json")
    changed = frozenset(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    return StatePoint(event.version, current, event, after, before, changed)
