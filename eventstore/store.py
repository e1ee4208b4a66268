"""The event store: one table, one append statement, one reader query.

Contract:

- `append` writes all of its events or none, in one round trip, and checks
  the expected version: `ANY`, `NO_STREAM` or an exact number. A lost race
  raises `ConcurrencyError` and writes nothing. Re-appending the very same
  event ids at the same versions returns the first append's positions.
  No table lock, no advisory lock, no NOTIFY: writers never wait for each other
  except on the very same stream version.
- `read_all` returns events in the log's read order, `(tx_id,
  global_position)`, only below the transaction-id horizon (the oldest
  transaction still running anywhere in the cluster). An event whose
  transaction commits late is therefore never behind a checkpoint that a
  reader has already passed: nothing is ever skipped.
- Keep the append the first write of its transaction: an earlier write gives
  the transaction an older id, and its events would sort before events that
  were committed before them.

Statements are composed with `psycopg.sql` and run on Django's connection (so
they join the caller's `transaction.atomic()` block) through a server-side
binding cursor, which lets PostgreSQL prepare them.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from django.db import connections, transaction
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.pq import Format
from pydantic import BaseModel

from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.records import (
    ANY,
    NO_STREAM,
    START,
    AppendResult,
    Checkpoint,
    ExpectedVersion,
    NewEvent,
    ReadResult,
    RecordedEvent,
    bucket_of,
)
from eventstore.registry import EventRegistry
from eventstore.registry import registry as default_registry

ANY_VERSION_RETRIES = 5
EMPTY: dict[str, Any] = {}


# Reads decode every column in C: psycopg's own timestamptz loader (Django installs a Python one
# on its connections), its integer loader for xid8 (whose text form is digits), and orjson for
# jsonb. Rows become RecordedEvents through tuple.__new__, again without a Python frame.
XID8_OID = 5069


class _JsonLoader(Loader):
    load = orjson.loads  # a builtin, so not bound as a method: psycopg calls orjson directly


def _recorded_event_row(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    return _MAKE_RECORDED_EVENT


_MAKE_RECORDED_EVENT = functools.partial(tuple.__new__, RecordedEvent)
_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)
_INT_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["int8"].oid, Format.TEXT)

TABLE = sql.Identifier("eventstore_event")
COLUMNS = sql.SQL(
    "global_position, tx_id, stream_id, category, version, event_id, event_type, schema_version, "
    "data, metadata, recorded_at"
)
# The horizon: every transaction below it has ended, so no row can still appear below it.
HORIZON = sql.SQL("tx_id < pg_snapshot_xmin(pg_current_snapshot())")


@functools.lru_cache(maxsize=8)
def append_statement(exact: bool, batch: bool) -> bytes:
    """The one append statement; versions follow the expected (or the current) version.

    Named parameters: stream_id, category, bucket, expected (exact only), and either one
    event's e, t, s, d, m (id or NULL, type, schema version, data, metadata as JSON text) or,
    for a batch, `batch`: a JSON array of [id or null, type, schema version, data, metadata].
    A batch travels as one parameter, so the statement and its parameter list stay the same
    size whatever the number of events (psycopg caches and PostgreSQL prepares it once).
    """
    if batch:
        source = sql.SQL(
            "SELECT (j->>0)::uuid AS e, j->>1 AS t, (j->>2)::int2 AS s, j->3 AS d, j->4 AS m, n "
            "FROM jsonb_array_elements(%(batch)s::jsonb) WITH ORDINALITY AS a(j, n)"
        )
    else:
        source = sql.SQL(
            "SELECT %(e)s::uuid AS e, %(t)s::text AS t, %(s)s::int2 AS s, %(d)s::jsonb AS d, %(m)s::jsonb AS m, 1 AS n"
        )
    if exact:
        base = sql.SQL("%(expected)s::int")
        where = sql.SQL(
            " WHERE %(expected)s::int = 0 OR EXISTS "
            "(SELECT 1 FROM {table} WHERE stream_id = %(stream_id)s AND version = %(expected)s::int)"
        ).format(table=TABLE)
    else:
        base = sql.SQL("(SELECT coalesce(max(version), 0) FROM {table} WHERE stream_id = %(stream_id)s)").format(
            table=TABLE
        )
        where = sql.SQL("")
    statement = sql.SQL(
        "INSERT INTO {table} (stream_id, category, bucket, version, event_id, event_type, schema_version, "
        "data, metadata) SELECT %(stream_id)s, %(category)s, %(bucket)s, {base} + x.n, "
        "coalesce(x.e, gen_random_uuid()), x.t, x.s, x.d, x.m FROM ({source}) AS x{where} "
        "RETURNING version, global_position, event_id"
    ).format(table=TABLE, base=base, source=source, where=where)
    return statement.as_bytes(None)


# The read must walk an index in (tx_id, global_position) order and stop at the limit. Without
# statistics (a new table) the planner may prefer a bitmap scan and a sort of everything after the
# checkpoint; these transaction-local settings rule that out for the one statement.
ORDERED_SCAN_ON = "SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)"
ORDERED_SCAN_OFF = "SELECT set_config('enable_sort', 'on', true), set_config('enable_bitmapscan', 'on', true)"


@functools.lru_cache(maxsize=16)
def read_all_statement(bucket: bool, categories: bool, types: bool) -> bytes:
    conds = [sql.SQL("(tx_id, global_position) > (%(tx)s::text::xid8, %(pos)s)"), HORIZON]
    if bucket:
        conds.insert(0, sql.SQL("bucket = %(bucket)s::int2"))
    if categories:
        conds.append(sql.SQL("category = ANY(%(categories)s::text[])"))
    if types:
        conds.append(sql.SQL("event_type = ANY(%(types)s::text[])"))
    return (
        sql.SQL("SELECT {cols} FROM {table} WHERE {conds} ORDER BY tx_id, global_position LIMIT %(limit)s")
        .format(cols=COLUMNS, table=TABLE, conds=sql.SQL(" AND ").join(conds))
        .as_bytes(None)
    )


STREAM_VERSION = sql.SQL("SELECT coalesce(max(version), 0) FROM {table} WHERE stream_id = %s").format(table=TABLE)
FIND_EVENTS = sql.SQL(
    "SELECT event_id, stream_id, version, global_position FROM {table} WHERE event_id = ANY(%s)"
).format(table=TABLE)


def _upcast_all(events: list[RecordedEvent], reg: EventRegistry) -> list[RecordedEvent]:
    """Bring events of older schema versions up to date (a no-op pass when no type has history)."""
    if not reg.has_history:
        return events
    current = reg.current_versions
    out = []
    for e in events:
        if e.schema_version < current.get(e.type, e.schema_version):
            schema_version, data = reg.upcast(e.type, e.schema_version, e.data)
            e = e._replace(schema_version=schema_version, data=data)
        out.append(e)
    return out


class EventStore:
    """Append to and read from the event log on a Django database connection."""

    def __init__(self, using: str = "default", registry: EventRegistry = default_registry) -> None:
        self.using = using
        self.registry = registry

    # -- connection -------------------------------------------------------------
    def _cursor(self) -> psycopg.Cursor:
        conn = connections[self.using]
        conn.ensure_connection()
        return psycopg.Cursor(conn.connection)

    def _read_cursor(self) -> psycopg.Cursor[RecordedEvent]:
        """A cursor whose rows are RecordedEvents, built without a Python call per row or column."""
        conn = connections[self.using]
        conn.ensure_connection()
        cur = psycopg.Cursor(conn.connection, row_factory=_recorded_event_row)
        cur.adapters.register_loader("jsonb", _JsonLoader)
        cur.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)
        cur.adapters.register_loader(XID8_OID, _INT_LOADER)
        return cur

    def _fetch_events(self, cur: psycopg.Cursor[RecordedEvent]) -> list[RecordedEvent]:
        # A page allocates thousands of dicts at once: collecting garbage in between only costs.
        enabled = gc.isenabled()
        gc.disable()
        try:
            events = cur.fetchall()
        finally:
            if enabled:
                gc.enable()
        return _upcast_all(events, self.registry)

    # -- writing ----------------------------------------------------------------
    def append(
        self,
        stream_id: UUID,
        category: str,
        events: Sequence[NewEvent | BaseModel],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append `events` to a stream atomically; see the module docstring for the contract."""
        if not events:
            raise ValueError("append needs at least one event")
        batch = [e if type(e) is NewEvent else NewEvent(e) for e in events]
        if expected_version == ANY:
            expected: int | None = None
        elif expected_version == NO_STREAM:
            expected = 0
        elif isinstance(expected_version, int) and not isinstance(expected_version, bool) and expected_version >= 0:
            expected = expected_version
        else:
            raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 0, not {expected_version!r}")
        statement = append_statement(expected is not None, len(batch) > 1)
        params = self._params(stream_id, category, batch, expected)

        attempts = ANY_VERSION_RETRIES if expected is None else 1
        for attempt in range(attempts):
            try:
                rows = self._insert(statement, params)
            except pg_errors.UniqueViolation:
                original = self._find_original(stream_id, batch, expected_version)
                if original is not None:
                    return original
                if attempt + 1 < attempts:
                    continue
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id)) from None
            if not rows:  # exact check failed: the stream is behind the expected version
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id))
            rows.sort()
            return AppendResult(stream_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        raise AssertionError("unreachable")

    def _params(
        self, stream_id: UUID, category: str, batch: Sequence[NewEvent], expected: int | None
    ) -> dict[str, Any]:
        """The named parameters `append_statement` documents."""
        of = self.registry.of
        params: dict[str, Any] = {
            "stream_id": stream_id,
            "category": category,
            "bucket": bucket_of(stream_id),
            "expected": expected,
        }
        if len(batch) == 1:
            event = batch[0]
            entry = of(event.payload)
            params["e"], params["t"], params["s"] = event.event_id, entry.name, entry.version
            params["d"] = event.payload.__pydantic_serializer__.to_json(event.payload).decode()
            params["m"] = orjson.dumps(event.metadata or EMPTY).decode()
            return params
        rows = []
        for event in batch:
            entry = of(event.payload)
            data = orjson.Fragment(event.payload.__pydantic_serializer__.to_json(event.payload))
            rows.append((event.event_id, entry.name, entry.version, data, event.metadata or EMPTY))
        params["batch"] = orjson.dumps(rows).decode()
        return params

    def _insert(self, statement: bytes, params: dict[str, Any]) -> list[tuple[int, int, UUID]]:
        conn = connections[self.using]
        if conn.in_atomic_block:
            # A failed statement would doom the caller's transaction: isolate it.
            with transaction.atomic(using=self.using), self._cursor() as cur:
                return cur.execute(statement, params, prepare=True).fetchall()
        # Autocommit: the one statement is one atomic transaction. The hot path reuses one
        # cursor per database connection.
        pg = conn.connection
        cur = getattr(conn, "_eventstore_cursor", None)
        if cur is None or cur.connection is not pg or pg is None:
            conn.ensure_connection()
            cur = conn._eventstore_cursor = psycopg.Cursor(conn.connection)
        return cur.execute(statement, params, prepare=True).fetchall()

    def _find_original(self, stream_id: UUID, batch: list[NewEvent], expected: ExpectedVersion) -> AppendResult | None:
        """If these very events are already stored at the versions asked for, the earlier append's result."""
        ids = [e.event_id for e in batch]
        given = [i for i in ids if i is not None]
        if not given:
            return None
        with self._cursor() as cur:
            found = {row[0]: row[1:] for row in cur.execute(FIND_EVENTS, [given])}
        if not found:
            return None
        placed = [found.get(i) for i in ids]
        if len(given) == len(ids) and all(p is not None and p[0] == stream_id for p in placed):
            versions = [p[1] for p in placed]
            first = versions[0]
            if expected == ANY:
                expected_first = first
            elif expected == NO_STREAM:
                expected_first = 1
            else:
                expected_first = int(expected) + 1
            if versions == list(range(first, first + len(ids))) and first == expected_first:
                return AppendResult(stream_id, versions, [p[2] for p in placed], ids)  # type: ignore[arg-type]
        raise DuplicateEventError(
            "event ids already stored elsewhere in the log: " + ", ".join(str(i) for i in ids if i in found)
        )

    # -- reading ----------------------------------------------------------------
    def stream_version(self, stream_id: UUID) -> int:
        """The stream's current version, 0 when it has no events."""
        with self._cursor() as cur:
            return cur.execute(STREAM_VERSION, [stream_id], prepare=True).fetchone()[0]

    def read_stream(
        self,
        stream_id: UUID,
        *,
        from_version: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events in version order (or reversed from `from_version` down with `backwards`)."""
        conds = [sql.SQL("stream_id = %(stream_id)s")]
        params: dict[str, Any] = {"stream_id": stream_id, "limit": limit}
        if from_version is not None:
            conds.append(sql.SQL("version <= %(from)s" if backwards else "version >= %(from)s"))
            params["from"] = from_version
        if to_version is not None:
            conds.append(sql.SQL("version <= %(to)s"))
            params["to"] = to_version
        if recorded_until is not None:
            conds.append(sql.SQL("recorded_at <= %(until)s"))
            params["until"] = recorded_until
        query = sql.SQL("SELECT {cols} FROM {table} WHERE {conds} ORDER BY version {dir} LIMIT %(limit)s").format(
            cols=COLUMNS,
            table=TABLE,
            conds=sql.SQL(" AND ").join(conds),
            dir=sql.SQL("DESC" if backwards else "ASC"),
        )
        with self._read_cursor() as cur:
            cur.execute(query, params, prepare=True)
            return self._fetch_events(cur)

    def read_all(
        self,
        after: Checkpoint = START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        bucket: int | None = None,
    ) -> ReadResult:
        """Up to `limit` events after the checkpoint, in read order, below the horizon."""
        params: dict[str, Any] = {"tx": str(after.tx_id), "pos": after.position, "limit": limit}
        if bucket is not None:
            params["bucket"] = bucket
        if categories:
            params["categories"] = list(categories)
        if types:
            params["types"] = list(types)
        query = read_all_statement(bucket is not None, bool(categories), bool(types))
        conn = connections[self.using]
        with self._read_cursor() as cur:
            pg = cur.connection
            if conn.in_atomic_block:
                cur.execute(ORDERED_SCAN_ON)
                cur.execute(query, params, prepare=True)
                events = self._fetch_events(cur)
                cur.execute(ORDERED_SCAN_OFF)
            else:
                with pg.pipeline(), pg.transaction():  # one round trip: BEGIN, settings, SELECT, COMMIT
                    cur.execute(ORDERED_SCAN_ON)
                    cur.execute(query, params, prepare=True)
                events = self._fetch_events(cur)
        return ReadResult(events, events[-1].checkpoint if events else after)

    def head(self) -> Checkpoint:
        """The last committed event in read order (START for an empty log), horizon or not."""
        query = sql.SQL(
            "SELECT tx_id, global_position FROM {table} ORDER BY tx_id DESC, global_position DESC LIMIT 1"
        ).format(table=TABLE)
        with self._cursor() as cur:
            cur.adapters.register_loader(XID8_OID, _INT_LOADER)
            row = cur.execute(query).fetchone()
        return Checkpoint(*row) if row else START
