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

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from django.db import connections, transaction
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.adapt import Loader
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
from eventstore.registry import EventRegistry, registry as default_registry

ANY_VERSION_RETRIES = 5
XID8_OID = 5069


class _Xid8Loader(Loader):
    def load(self, data: Any) -> int:
        return int(bytes(data))


psycopg.adapters.register_loader(XID8_OID, _Xid8Loader)

TABLE = sql.Identifier("eventstore_event")
COLUMNS = sql.SQL(
    "global_position, tx_id, stream_id, category, version, event_id, event_type, schema_version, "
    "data, metadata, recorded_at"
)
# The horizon: every transaction below it has ended, so no row can still appear below it.
HORIZON = sql.SQL("tx_id < pg_snapshot_xmin(pg_current_snapshot())")

_INSERT = sql.SQL(
    "INSERT INTO {table} (stream_id, category, bucket, version, event_id, event_type, schema_version, data, metadata) "
    "SELECT %(stream_id)s, %(category)s, %(bucket)s, {base} + n, e, t, s, d::jsonb, m::jsonb "
    "FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(svs)s::int2[], %(data)s::text[], %(meta)s::text[]) "
    "WITH ORDINALITY AS x(e, t, s, d, m, n) {where} "
    "RETURNING version, global_position"
)
APPEND_EXACT = _INSERT.format(
    table=TABLE,
    base=sql.SQL("%(expected)s::int"),
    where=sql.SQL(
        "WHERE %(expected)s::int = 0 OR EXISTS "
        "(SELECT 1 FROM {table} WHERE stream_id = %(stream_id)s AND version = %(expected)s::int)"
    ).format(table=TABLE),
)
APPEND_ANY = _INSERT.format(
    table=TABLE,
    base=sql.SQL("(SELECT coalesce(max(version), 0) FROM {table} WHERE stream_id = %(stream_id)s)").format(
        table=TABLE
    ),
    where=sql.SQL(""),
)
STREAM_VERSION = sql.SQL("SELECT coalesce(max(version), 0) FROM {table} WHERE stream_id = %s").format(table=TABLE)
FIND_EVENTS = sql.SQL("SELECT event_id, stream_id, version, global_position FROM {table} WHERE event_id = ANY(%s)").format(
    table=TABLE
)


def _decode_rows(rows: Iterable[tuple], reg: EventRegistry) -> list[RecordedEvent]:
    loads = orjson.loads
    current = reg.current_versions
    out = []
    append = out.append
    for pos, tx, sid, cat, ver, eid, typ, sv, data, meta, at in rows:
        data = loads(data)
        if sv < current.get(typ, sv):
            sv, data = reg.upcast(typ, sv, data)
        append(RecordedEvent(pos, tx, sid, cat, ver, eid, typ, sv, data, loads(meta), at))
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
        batch = [e if isinstance(e, NewEvent) else NewEvent(e) for e in events]
        params = self._params(stream_id, category, batch)
        if expected_version == ANY:
            statement = APPEND_ANY
        elif expected_version == NO_STREAM:
            statement, params["expected"] = APPEND_EXACT, 0
        elif isinstance(expected_version, int) and not isinstance(expected_version, bool) and expected_version >= 0:
            statement, params["expected"] = APPEND_EXACT, expected_version
        else:
            raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 0, not {expected_version!r}")

        attempts = ANY_VERSION_RETRIES if expected_version == ANY else 1
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
            return AppendResult(stream_id, [r[0] for r in rows], [r[1] for r in rows])
        raise AssertionError("unreachable")

    def _params(self, stream_id: UUID, category: str, batch: list[NewEvent]) -> dict[str, Any]:
        of = self.registry.of
        types, versions, data, meta = [], [], [], []
        for event in batch:
            entry = of(event.payload)
            types.append(entry.name)
            versions.append(entry.version)
            data.append(event.payload.__pydantic_serializer__.to_json(event.payload).decode())
            meta.append(orjson.dumps(event.metadata).decode())
        return {
            "stream_id": stream_id,
            "category": category,
            "bucket": bucket_of(stream_id),
            "ids": [e.event_id for e in batch],
            "types": types,
            "svs": versions,
            "data": data,
            "meta": meta,
        }

    def _insert(self, statement: sql.Composable, params: dict[str, Any]) -> list[tuple[int, int]]:
        conn = connections[self.using]
        if conn.in_atomic_block:
            # A failed statement would doom the caller's transaction: isolate it.
            with transaction.atomic(using=self.using), self._cursor() as cur:
                return cur.execute(statement, params).fetchall()
        with self._cursor() as cur:  # autocommit: one statement is one atomic transaction
            return cur.execute(statement, params).fetchall()

    def _find_original(
        self, stream_id: UUID, batch: list[NewEvent], expected: ExpectedVersion
    ) -> AppendResult | None:
        """If these very events are already stored at the versions asked for, the earlier append's result."""
        with self._cursor() as cur:
            found = {row[0]: row[1:] for row in cur.execute(FIND_EVENTS, [[e.event_id for e in batch]])}
        if not found:
            return None
        placed = [found.get(e.event_id) for e in batch]
        first = placed[0][1] if placed[0] else 0
        same_place = all(
            p is not None and p[0] == stream_id and p[1] == first + i for i, p in enumerate(placed)
        ) and (expected in (ANY,) or first == (1 if expected == NO_STREAM else int(expected) + 1))
        if same_place:
            return AppendResult(stream_id, [p[1] for p in placed], [p[2] for p in placed])
        raise DuplicateEventError(
            "event ids already stored elsewhere in the log: "
            + ", ".join(str(e.event_id) for e in batch if e.event_id in found)
        )

    # -- reading ----------------------------------------------------------------
    def stream_version(self, stream_id: UUID) -> int:
        """The stream's current version, 0 when it has no events."""
        with self._cursor() as cur:
            return cur.execute(STREAM_VERSION, [stream_id]).fetchone()[0]

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
        with self._cursor() as cur:
            return _decode_rows(cur.execute(query, params), self.registry)

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
        conds = [sql.SQL("(tx_id, global_position) > (%(tx)s::text::xid8, %(pos)s)"), HORIZON]
        params: dict[str, Any] = {"tx": str(after.tx_id), "pos": after.position, "limit": limit}
        if bucket is not None:
            conds.insert(0, sql.SQL("bucket = %(bucket)s::int2"))
            params["bucket"] = bucket
        if categories:
            conds.append(sql.SQL("category = ANY(%(categories)s::text[])"))
            params["categories"] = list(categories)
        if types:
            conds.append(sql.SQL("event_type = ANY(%(types)s::text[])"))
            params["types"] = list(types)
        query = sql.SQL(
            "SELECT {cols} FROM {table} WHERE {conds} ORDER BY tx_id, global_position LIMIT %(limit)s"
        ).format(cols=COLUMNS, table=TABLE, conds=sql.SQL(" AND ").join(conds))
        with self._cursor() as cur:
            events = _decode_rows(cur.execute(query, params), self.registry)
        return ReadResult(events, events[-1].checkpoint if events else after)

    def head(self) -> Checkpoint:
        """The last committed event in read order (START for an empty log), horizon or not."""
        query = sql.SQL(
            "SELECT tx_id, global_position FROM {table} ORDER BY tx_id DESC, global_position DESC LIMIT 1"
        ).format(table=TABLE)
        with self._cursor() as cur:
            row = cur.execute(query).fetchone()
        return Checkpoint(*row) if row else START
