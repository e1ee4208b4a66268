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
import os
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

import orjson
import psycopg
from django.db import connections, transaction
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.adapt import Loader
from psycopg.pq import Format
from pydantic import BaseModel

from eventstore import hooks, personal_data
from eventstore.errors import ConcurrencyError, DuplicateEventError, SubjectForgotten
from eventstore.personal_data import SubjectKeys
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
from eventstore.registry import EventRegistry, EventType
from eventstore.registry import registry as default_registry

ANY_VERSION_RETRIES = 5
EMPTY: dict[str, Any] = {}
_UNSET = object()


# Reads ask for binary results and decode every column in C: the server then sends UUIDs,
# integers, xid8 and times as they are stored instead of formatting them as text, psycopg loads
# them with its C loaders (its own timestamptz loader, not the Python one Django installs for
# text), and data and metadata come as their JSON text in a bytea (`textsend(data::text)`: a
# cast to json would parse the text again on the server), straight into orjson. Rows become
# RecordedEvents through tuple.__new__, again without a Python frame.
XID8_OID = 5069


class _JsonTextInBytesLoader(Loader):
    format = Format.BINARY
    load = orjson.loads  # a builtin, so not bound as a method: psycopg calls orjson directly


def _recorded_event_row(cursor: Any) -> Callable[[Sequence[Any]], RecordedEvent]:
    return _MAKE_RECORDED_EVENT


_MAKE_RECORDED_EVENT = functools.partial(tuple.__new__, RecordedEvent)
_INT_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["int8"].oid, Format.TEXT)
_TIMESTAMPTZ_BINARY_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.BINARY)
_INT_BINARY_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["int8"].oid, Format.BINARY)

TABLE = sql.Identifier("eventstore_event")
COLUMNS = sql.SQL(
    "global_position, tx_id, stream_id, category, version, event_id, event_type, schema_version, "
    "textsend(data::text) AS data, textsend(metadata::text) AS metadata, recorded_at"
)
# The horizon: every transaction below it has ended, so no row can still appear below it.
HORIZON = sql.SQL("tx_id < pg_snapshot_xmin(pg_current_snapshot())")


UUID_OID, TEXT_OID, INT2_OID, INT4_OID, JSONB_OID = 2950, 25, 21, 23, 3802


class AppendStatement(NamedTuple):
    name: bytes
    text: bytes
    types: tuple[int, ...]
    formats: tuple[int, ...]  # per parameter: 1 binary (the UUIDs, 16 bytes each), 0 text


VALUES_LIMIT = 64  # up to this many events an append binds each value; beyond, one JSON array
TEXT, BINARY = 0, 1


@functools.cache
def append_statement(exact: bool, n: int, new: bool = False) -> AppendStatement:
    """The one append statement for `n` events; versions follow the expected (or, for ANY, the
    current) version. `new` (expected version 0) needs no check that the stream has reached
    it: the primary key refuses version 1 of an existing stream.

    Parameters: $1 stream_id (binary), $2 category, $3 bucket, $4 expected version (NULL for
    ANY), then for each event i (0-based) $5+5i id (binary), type, schema version, data,
    metadata. Above VALUES_LIMIT events, $5 instead is a JSON array of [id, type, schema
    version, data, metadata], so a huge batch is still one statement.

    Event ids always come from the client (random ones made in one call for events without):
    PostgreSQL's gen_random_uuid() costs more per row than the rest of the row's insert but
    an index, and the append then need not send them back.
    """
    types: tuple[int, ...] = (UUID_OID, TEXT_OID, INT2_OID, INT4_OID)
    formats: tuple[int, ...] = (BINARY, TEXT, TEXT, TEXT)
    if n > VALUES_LIMIT:
        source = (
            "SELECT (j->>0)::uuid, j->>1, (j->>2)::int2, j->3, j->4, n "
            "FROM jsonb_array_elements($5) WITH ORDINALITY AS a(j, n)"
        )
        types += (JSONB_OID,)
        formats += (TEXT,)
    else:
        rows = []
        for i in range(n):
            p = 5 + 5 * i
            rows.append(f"(${p}, ${p + 1}, ${p + 2}, ${p + 3}, ${p + 4}, {i + 1})")
            types += (UUID_OID, TEXT_OID, INT2_OID, JSONB_OID, JSONB_OID)
            formats += (BINARY, TEXT, TEXT, TEXT, TEXT)
        source = "VALUES " + ", ".join(rows)
    if exact:
        base = "$4"
        guard = " WHERE $4 = 0 OR EXISTS (SELECT 1 FROM eventstore_event WHERE stream_id = $1 AND version = $4)"
        where = "" if new else guard
    else:
        base = "(SELECT coalesce(max(version), 0) FROM eventstore_event WHERE stream_id = $1)"
        where = ""
    text = (
        "INSERT INTO eventstore_event (stream_id, category, bucket, version, event_id, event_type, "
        f"schema_version, data, metadata) SELECT $1, $2, $3, {base} + x.n, x.e, "
        f"x.t, x.s, x.d, x.m FROM ({source}) AS x(e, t, s, d, m, n){where} "
        "RETURNING version, global_position"
    )
    size = "json" if n > VALUES_LIMIT else str(n)
    name = f"eventfold_append2_{'new' if new else 'exact' if exact else 'any'}_{size}"
    return AppendStatement(name.encode(), text.encode(), types, formats)


# Random (version 4) UUIDs for n events from one call to the OS: masks set the version and
# variant bits of every 16-byte id at once, so no Python loop touches the bytes.
_UUID_BITS = (1 << 128) - 1
_UUID_KEEP = _UUID_BITS & ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


@functools.cache
def _uuid4_masks(n: int) -> tuple[int, int]:
    keep = set_ = 0
    for _ in range(n):
        keep, set_ = keep << 128 | _UUID_KEEP, set_ << 128 | _UUID_SET
    return keep, set_


def random_event_ids(n: int) -> list[bytes]:
    """n random version-4 UUIDs as 16-byte strings."""
    keep, set_ = _uuid4_masks(n)
    blob = ((int.from_bytes(os.urandom(16 * n)) & keep) | set_).to_bytes(16 * n)
    return [blob[i : i + 16] for i in range(0, 16 * n, 16)]


_set_slot, _new_object, _UNKNOWN = object.__setattr__, object.__new__, SafeUUID.unknown


def _event_ids(batch: Sequence[NewEvent]) -> list[UUID]:
    """Each event's id: its own, or a random one (all of an append's from one call to the OS)."""
    ids = [e.event_id for e in batch]
    missing = sum(1 for i in ids if i is None)
    if not missing:
        return ids  # type: ignore[return-value]
    made = iter(random_event_ids(missing))
    return [uuid_from_bytes(next(made)) if i is None else i for i in ids]


def uuid_from_bytes(raw: bytes) -> UUID:
    """UUID(bytes=raw) without its argument checks, which cost more than the rest of an event's append."""
    value = _new_object(UUID)
    _set_slot(value, "int", int.from_bytes(raw))
    _set_slot(value, "is_safe", _UNKNOWN)
    return value


# Statements prepared on each libpq connection (connections come and go with Django's).
_prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()


def _exec_prepared(conn: psycopg.Connection, statement: AppendStatement, values: list[bytes | None]) -> Any:
    """Run a prepared statement straight through libpq: one C call, GIL released while waiting.

    The append is the hot path of every command; psycopg's cursor machinery costs more
    client CPU than the statement's own round trip on a small machine.
    """
    pgconn = conn.pgconn
    names = _prepared.setdefault(conn, set())
    if statement.name not in names:
        result = pgconn.prepare(statement.name, statement.text, statement.types)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
        names.add(statement.name)
    result = pgconn.exec_prepared(statement.name, values, statement.formats)
    if result.status != pq.ExecStatus.TUPLES_OK:
        error = pg_errors.error_from_result(result, encoding=conn.info.encoding)
        if isinstance(error, pg_errors.InvalidSqlStatementName):  # deallocated behind our back
            names.discard(statement.name)
            return _exec_prepared(conn, statement, values)
        raise error
    return result


# The read must walk an index in (tx_id, global_position) order and stop at the limit. Without
# statistics (a new table) the planner may prefer a bitmap scan and a sort of everything after the
# checkpoint; these transaction-local settings rule that out for the one statement.
ORDERED_SCAN_ON = "SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)"
ORDERED_SCAN_OFF = "SELECT set_config('enable_sort', 'on', true), set_config('enable_bitmapscan', 'on', true)"


def filter_conditions(categories: bool, types: bool, correlation: bool) -> list[sql.Composable]:
    """The filters a reader of the log may add, named as the read queries' parameters."""
    conds: list[sql.Composable] = []
    if categories:
        conds.append(sql.SQL("category = ANY(%(categories)s::text[])"))
    if types:
        conds.append(sql.SQL("event_type = ANY(%(types)s::text[])"))
    if correlation:  # a filter on the ordered scan, not an index: meant for browsing
        conds.append(sql.SQL("metadata->>'correlation_id' = %(correlation)s::text"))
    return conds


@functools.lru_cache(maxsize=32)
def read_all_statement(bucket: bool, categories: bool, types: bool, correlation: bool = False) -> bytes:
    conds = [sql.SQL("(tx_id, global_position) > (%(tx)s::text::xid8, %(pos)s)"), HORIZON]
    if bucket:
        conds.insert(0, sql.SQL("bucket = %(bucket)s::int2"))
    conds += filter_conditions(categories, types, correlation)
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
        cur.format = Format.BINARY
        cur.adapters.register_loader("bytea", _JsonTextInBytesLoader)
        cur.adapters.register_loader("timestamptz", _TIMESTAMPTZ_BINARY_LOADER)
        cur.adapters.register_loader(XID8_OID, _INT_BINARY_LOADER)
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
        events = _upcast_all(events, self.registry)
        if self.registry.personal_types:
            self._reveal(events)
        return events

    def _reveal(self, events: list[RecordedEvent]) -> None:
        """Decrypt personal data in place while the subject's key exists."""
        personal = self.registry.personal_types
        sealed = [e for e in events if e.type in personal]
        if not sealed:
            return
        keys = SubjectKeys(self.using).get(e.stream_id for e in sealed)
        for e in sealed:
            key = keys.get(e.stream_id)
            for name in personal[e.type]:
                if name in e.data:
                    e.data[name] = personal_data.decrypt(key, e.event_id, name, e.data[name])

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
        if not category or not isinstance(category, str):
            raise ValueError(f"category must be a non-empty string, not {category!r}")
        batch = [e if type(e) is NewEvent else NewEvent(e) for e in events]
        if expected_version == ANY:
            expected: int | None = None
        elif expected_version == NO_STREAM:
            expected = 0
        elif isinstance(expected_version, int) and not isinstance(expected_version, bool) and expected_version >= 0:
            expected = expected_version
        else:
            raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 0, not {expected_version!r}")
        entries = [self.registry.of(e.payload) for e in batch]  # one registry lookup per event
        personal = self.registry.personal_types
        if personal and any(entry.name in personal for entry in entries):
            result = self._append_personal(stream_id, category, batch, entries, expected_version, expected)
        else:
            result = self._append(stream_id, category, batch, entries, expected_version, expected, {})
        hooks.appended(self.using, result)
        return result

    def _append(
        self,
        stream_id: UUID,
        category: str,
        batch: list[NewEvent],
        entries: list[EventType],
        expected_version: ExpectedVersion,
        expected: int | None,
        sealed: dict[int, bytes],
    ) -> AppendResult:
        statement = append_statement(expected is not None, min(len(batch), VALUES_LIMIT + 1), expected == 0)
        ids = _event_ids(batch)
        values = self._values(stream_id, category, batch, entries, expected, sealed, [i.bytes for i in ids])

        attempts = ANY_VERSION_RETRIES if expected is None else 1
        for attempt in range(attempts):
            try:
                rows = self._insert(statement, values)
            except pg_errors.UniqueViolation:
                original = self._find_original(stream_id, batch, expected_version)
                if original is not None:
                    return original
                if attempt + 1 < attempts:
                    continue
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id)) from None
            if not rows:  # exact check failed: the stream is behind the expected version
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id))
            versions = [r[0] for r in rows]
            if versions != sorted(versions):  # RETURNING follows the VALUES order; never rely on it blindly
                rows.sort()
                versions = [r[0] for r in rows]
            return AppendResult(stream_id, versions, [r[1] for r in rows], ids)  # type: ignore[arg-type]
        raise AssertionError("unreachable")

    def _append_personal(
        self,
        stream_id: UUID,
        category: str,
        batch: list[NewEvent],
        entries: list[EventType],
        expected_version: ExpectedVersion,
        expected: int | None,
    ) -> AppendResult:
        """Append events with personal data: encrypted with the stream's subject key (made on
        first use and stored after the append, in the same transaction)."""
        keys = SubjectKeys(self.using)
        known = keys.get([stream_id])
        if stream_id in known and known[stream_id] is None:
            raise SubjectForgotten(f"subject {stream_id} was forgotten: no new personal data can be stored")
        new_key = None if stream_id in known else keys.new_key()
        key = known.get(stream_id) or new_key
        assert key is not None
        batch = [e._replace(event_id=i) for e, i in zip(batch, _event_ids(batch), strict=True)]
        sealed = {}
        for i, (event, entry) in enumerate(zip(batch, entries, strict=True)):
            fields = entry.personal_data
            if fields:
                data = event.payload.model_dump(mode="json")
                for name in fields:
                    if isinstance(data.get(name), str):
                        data[name] = personal_data.encrypt(key, event.event_id, name, data[name])  # type: ignore[arg-type]
                sealed[i] = orjson.dumps(data)
        with transaction.atomic(using=self.using):
            result = self._append(stream_id, category, batch, entries, expected_version, expected, sealed)
            if new_key is not None and not keys.store(stream_id, new_key):
                # another transaction gave this subject a key first: ours must not be committed
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id))
        return result

    def _values(
        self,
        stream_id: UUID,
        category: str,
        batch: Sequence[NewEvent],
        entries: list[EventType],
        expected: int | None,
        sealed: dict[int, bytes],
        ids: list[bytes],
    ) -> list[bytes | None]:
        """The parameters `append_statement` documents, in libpq's formats (UUIDs binary, the rest text)."""
        values: list[bytes | None] = [
            stream_id.bytes,
            category.encode(),
            b"%d" % bucket_of(stream_id),
            None if expected is None else b"%d" % expected,
        ]
        dumps = orjson.dumps
        last_meta: Any = _UNSET
        meta = b""
        if len(batch) <= VALUES_LIMIT:
            add = values.extend
            for i, event in enumerate(batch):
                if event.metadata is not last_meta:  # a command's events usually share one dict
                    last_meta = event.metadata
                    meta = dumps(last_meta or EMPTY)
                name, version = entries[i].wire
                payload = event.payload
                data = (sealed.get(i) if sealed else None) or payload.__pydantic_serializer__.to_json(payload)
                add((ids[i], name, version, data, meta))
            return values
        rows = []
        for i, (event, entry) in enumerate(zip(batch, entries, strict=True)):
            data = orjson.Fragment(sealed.get(i) or event.payload.__pydantic_serializer__.to_json(event.payload))
            rows.append((str(UUID(bytes=ids[i])), entry.name, entry.version, data, event.metadata or EMPTY))
        values.append(dumps(rows))
        return values

    def _insert(self, statement: AppendStatement, values: list[bytes | None]) -> list[tuple[int, int]]:
        conn = connections[self.using]
        if conn.in_atomic_block:
            # A failed statement would doom the caller's transaction: isolate it in a savepoint.
            with transaction.atomic(using=self.using):
                result = _exec_prepared(conn.connection, statement, values)
        else:  # autocommit: the one statement is one atomic transaction
            if conn.connection is None:
                conn.ensure_connection()
            result = _exec_prepared(conn.connection, statement, values)
        get = result.get_value
        return [(int(get(i, 0)), int(get(i, 1))) for i in range(result.ntuples)]

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
        correlation_id: str | None = None,
    ) -> ReadResult:
        """Up to `limit` events after the checkpoint, in read order, below the horizon."""
        params: dict[str, Any] = {"tx": str(after.tx_id), "pos": after.position, "limit": limit}
        if bucket is not None:
            params["bucket"] = bucket
        if categories:
            params["categories"] = list(categories)
        if types:
            params["types"] = list(types)
        if correlation_id:
            params["correlation"] = correlation_id
        query = read_all_statement(bucket is not None, bool(categories), bool(types), bool(correlation_id))
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
