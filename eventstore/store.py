"""The event store: one table, one append statement, one reader query.

Contract:

- `append` writes all of its events or none, in one round trip, and checks
  the expected version: `ANY`, `NO_STREAM` or an exact number. A lost race
  raises `ConcurrencyError` and writes nothing. Re-appending the very same
  event ids at the same versions returns the first append's positions.
  A tombstoned stream (`tombstone`) refuses every append with `StreamTombstoned`.
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

Statements (in `statements`) are composed with `psycopg.sql` and run on Django's connection (so
they join the caller's `transaction.atomic()` block) through a server-side binding cursor, which
lets PostgreSQL prepare them; the append and the reads take the fast path in `libpq`.
`InMemoryEventStore` (in `memory`) holds the same contract without a database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from django.db import connections, transaction
from psycopg import errors as pg_errors
from pydantic import BaseModel

from eventstore import hooks, libpq, personal_data, tracing
from eventstore.append_rules import check_append, original_append
from eventstore.errors import ConcurrencyError, StreamTombstoned
from eventstore.personal_data import SubjectKeys
from eventstore.records import (
    ANY,
    START,
    AppendResult,
    Checkpoint,
    ExpectedVersion,
    NewEvent,
    ReadResult,
    RecordedEvent,
    Tombstone,
)
from eventstore.registry import EventRegistry, EventType
from eventstore.registry import registry as default_registry
from eventstore.retention import Policy, configured
from eventstore.statements import (
    ARCHIVE_COPY,
    ARCHIVE_DROP,
    FIND_EVENTS,
    HEAD,
    ORDERED_SCAN_OFF,
    ORDERED_SCAN_ON,
    SNAPSHOT_DROP,
    SNAPSHOT_GET,
    SNAPSHOT_PUT,
    STREAM_VERSION,
    TOMBSTONE_GET,
    TOMBSTONE_PUT,
    TOMBSTONES_AFTER,
    VALUES_LIMIT,
    AppendStatement,
    append_statement,
    append_values,
    read_all_statement,
    read_stream_statement,
)

ANY_VERSION_RETRIES = 5
FIRST_STREAM = UUID(int=0)  # below every stream id, in PostgreSQL's uuid order as in Python's


def _traced(batch: list[NewEvent], trace_context: dict[str, str]) -> list[NewEvent]:
    """The events with the trace context in their metadata; events that shared one metadata dict
    still do (the append serialises each distinct dict once)."""
    merged: dict[int, dict[str, Any]] = {}
    out = []
    for event in batch:
        metadata = merged.get(id(event.metadata))
        if metadata is None:
            metadata = merged[id(event.metadata)] = {**(event.metadata or {}), **trace_context}
        out.append(event._replace(metadata=metadata))
    return out


class EventStore:
    """Append to and read from the event log on a Django database connection."""

    def __init__(
        self,
        using: str = "default",
        registry: EventRegistry = default_registry,
        *,
        retention: Policy | None = None,
    ) -> None:
        self.using = using
        self.registry = registry
        self.subject_keys = SubjectKeys(using)
        self._retention = retention

    @property
    def retention(self) -> Policy:
        """The categories whose events expire: as given, else the `EVENTFOLD_RETENTION` setting."""
        return self._retention if self._retention is not None else configured()

    # -- connection (for the modules that run their own SQL on the log) ----------
    def cursor(self) -> psycopg.Cursor:
        """A psycopg cursor on the store's Django connection (inside the caller's transaction)."""
        conn = connections[self.using]
        conn.ensure_connection()
        return psycopg.Cursor(conn.connection)

    def read_cursor(self) -> psycopg.Cursor[RecordedEvent]:
        """A cursor for statements that select `statements.COLUMNS`: its rows are RecordedEvents."""
        conn = connections[self.using]
        conn.ensure_connection()
        return libpq.read_cursor(conn.connection)

    def fetch_events(self, cur: psycopg.Cursor[RecordedEvent]) -> list[RecordedEvent]:
        """A read cursor's events as readers see them: upcast, personal data revealed."""
        events = self.registry.upcast_events(libpq.fetch_all(cur))
        if self.registry.personal_types:
            personal_data.reveal(self.subject_keys, self.registry.personal_types, events)
        return events

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once what was appended so far is committed (at once outside a transaction)."""
        transaction.on_commit(fn, using=self.using)

    # -- writing ----------------------------------------------------------------
    def append(
        self,
        stream_id: UUID,
        category: str,
        events: Sequence[NewEvent | BaseModel],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append `events` to a stream atomically; see the module docstring for the contract.
        When tracing is on, in a span whose trace context each event's metadata carries."""
        if not tracing.active():
            return self._append_events(stream_id, category, events, expected_version, {})
        where = {"eventfold.category": category, "eventfold.stream": str(stream_id)}
        with tracing.span("eventstore.append", where) as span:
            result = self._append_events(stream_id, category, events, expected_version, tracing.carrier())
            if span is not None:
                span.set_attribute("eventfold.position", result.position)
            return result

    def _append_events(
        self,
        stream_id: UUID,
        category: str,
        events: Sequence[NewEvent | BaseModel],
        expected_version: ExpectedVersion,
        trace_context: dict[str, str],
    ) -> AppendResult:
        started = time.perf_counter()
        batch, expected = check_append(category, events, expected_version)
        if trace_context:
            batch = _traced(batch, trace_context)
        entries = [self.registry.of(e.payload) for e in batch]  # one registry lookup per event
        personal = self.registry.personal_types
        if personal and any(entry.name in personal for entry in entries):
            result = self._append_personal(stream_id, category, batch, entries, expected_version, expected)
        else:
            result = self._append(stream_id, category, batch, entries, expected_version, expected, {})
        hooks.appended(self.using, result)
        hooks.timed(category, [entry.name for entry in entries], time.perf_counter() - started)
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
        ids = libpq.event_ids(batch)
        values = append_values(stream_id, category, batch, entries, expected, sealed, [i.bytes for i in ids])

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
            if not rows:  # a tombstone, or (exact) the stream is behind the expected version
                if self.tombstone_of(stream_id) is not None:
                    raise StreamTombstoned(stream_id)
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id))
            versions = [r[0] for r in rows]
            if versions != sorted(versions):  # RETURNING follows the VALUES order; never rely on it blindly
                rows.sort()
                versions = [r[0] for r in rows]
            return AppendResult(stream_id, versions, [r[1] for r in rows], ids)
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
        """Append events with personal data: sealed with the stream's subject key (a new one is
        stored after the append, in the same transaction)."""
        batch = [e._replace(event_id=i) for e, i in zip(batch, libpq.event_ids(batch), strict=True)]
        sealed = personal_data.seal(self.subject_keys, stream_id, batch, entries)
        with transaction.atomic(using=self.using):
            result = self._append(stream_id, category, batch, entries, expected_version, expected, sealed.data)
            if sealed.new_key is not None and not self.subject_keys.store(stream_id, sealed.new_key):
                # another transaction gave this subject a key first: ours must not be committed
                raise ConcurrencyError(stream_id, expected_version, self.stream_version(stream_id))
        return result

    def _insert(self, statement: AppendStatement, values: list[bytes | None]) -> list[tuple[int, int]]:
        conn = connections[self.using]
        if conn.in_atomic_block:
            # A failed statement would doom the caller's transaction: isolate it in a savepoint.
            # A statement deallocated behind libpq's back (see libpq.exec_prepared) fails once
            # and is prepared again in a fresh savepoint.
            for attempt in range(2):
                try:
                    with transaction.atomic(using=self.using):
                        result = libpq.exec_prepared(conn.connection, statement, values)
                    break
                except pg_errors.InvalidSqlStatementName:
                    if attempt:
                        raise
        else:  # autocommit: the one statement is one atomic transaction
            if conn.connection is None:
                conn.ensure_connection()
            result = libpq.exec_prepared(conn.connection, statement, values)
        get = result.get_value
        return [(int(get(i, 0)), int(get(i, 1))) for i in range(result.ntuples)]

    def _find_original(self, stream_id: UUID, batch: list[NewEvent], expected: ExpectedVersion) -> AppendResult | None:
        """If these very events are already stored at the versions asked for, the earlier append's result."""
        ids = [e.event_id for e in batch]
        given = [i for i in ids if i is not None]
        if not given:
            return None
        with self.cursor() as cur:
            found = {row[0]: row[1:] for row in cur.execute(FIND_EVENTS, [given])}
        return original_append(stream_id, ids, found, expected)

    # -- reading ----------------------------------------------------------------
    def stream_version(self, stream_id: UUID) -> int:
        """The stream's current version, 0 when it has no events."""
        with self.cursor() as cur:
            row = cur.execute(STREAM_VERSION, {"s": stream_id}, prepare=True).fetchone()
        assert row is not None  # an aggregate without GROUP BY: always one row
        return row[0]

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
        """A stream's events in version order (or reversed from `from_version` down with `backwards`),
        without its expired events (`retention`)."""
        params: dict[str, Any] = {"stream_id": stream_id, "limit": limit}
        if from_version is not None:
            params["from"] = from_version
        if to_version is not None:
            params["to"] = to_version
        if recorded_until is not None:
            params["until"] = recorded_until
        query = read_stream_statement(
            from_version is not None, backwards, to_version is not None, recorded_until is not None, self.retention
        )
        with self.read_cursor() as cur:
            cur.execute(query, params, prepare=True)
            return self.fetch_events(cur)

    def read_all(
        self,
        after: Checkpoint = START,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        bucket: int | None = None,
        correlation_id: str | None = None,
        include_archived: bool = False,
    ) -> ReadResult:
        """Up to `limit` events after the checkpoint, in read order, below the horizon, without
        expired events (`retention`). Archived streams' events (`archive`) only with
        `include_archived`: projections' catch-up, rebuilds, verification and exports ask for them;
        process managers and the timeline do not (streams are archived once every subscriber has
        passed them)."""
        params: dict[str, Any] = {"tx": str(after.tx_id), "pos": after.position, "limit": limit}
        if bucket is not None:
            params["bucket"] = bucket
        if categories:
            params["categories"] = list(categories)
        if types:
            params["types"] = list(types)
        if correlation_id:
            params["correlation"] = correlation_id
        query = read_all_statement(
            bucket is not None, bool(categories), bool(types), bool(correlation_id), self.retention, include_archived
        )
        conn = connections[self.using]
        with self.read_cursor() as cur:
            pg = cur.connection
            if conn.in_atomic_block:
                # one round trip: the settings, the SELECT, the settings back (a cursor of their
                # own, so that the read cursor keeps the SELECT's rows)
                with pg.cursor() as settings, pg.pipeline():
                    settings.execute(ORDERED_SCAN_ON)
                    cur.execute(query, params, prepare=True)
                    settings.execute(ORDERED_SCAN_OFF)
                events = self.fetch_events(cur)
            else:
                with pg.pipeline(), pg.transaction():  # one round trip: BEGIN, settings, SELECT, COMMIT
                    cur.execute(ORDERED_SCAN_ON)
                    cur.execute(query, params, prepare=True)
                events = self.fetch_events(cur)
        return ReadResult(events, events[-1].checkpoint if events else after)

    def read_buckets(
        self, starts: Mapping[int, Checkpoint], *, limit: int = 1000, include_archived: bool = False
    ) -> dict[int, list[RecordedEvent]]:
        """`read_all(after, limit=limit, bucket=bucket)` for each bucket from its own checkpoint,
        the reads together in one round trip (the projections' runner catches up several buckets
        in one transaction). Each bucket's events, in read order."""
        query = read_all_statement(True, False, False, False, self.retention, include_archived)
        conn = connections[self.using]
        conn.ensure_connection()
        pg = conn.connection
        cursors = {bucket: libpq.read_cursor(pg) for bucket in starts}
        try:
            with transaction.atomic(using=self.using, savepoint=False), pg.cursor() as settings, pg.pipeline():
                settings.execute(ORDERED_SCAN_ON)  # local to the transaction, set back after the reads
                for bucket, after in starts.items():
                    params = {"tx": str(after.tx_id), "pos": after.position, "limit": limit, "bucket": bucket}
                    cursors[bucket].execute(query, params, prepare=True)
                settings.execute(ORDERED_SCAN_OFF)
            return {bucket: self.fetch_events(cur) for bucket, cur in cursors.items()}
        finally:
            for cur in cursors.values():
                cur.close()

    def head(self) -> Checkpoint:
        """The last committed event in read order (START for an empty log), horizon or not."""
        with self.cursor() as cur:
            cur.adapters.register_loader(libpq.XID8_OID, libpq.INT_LOADER)
            row = cur.execute(HEAD).fetchone()
        return Checkpoint(*row) if row else START

    # -- tombstones ----------------------------------------------------------------
    def tombstone(self, stream_id: UUID, *, reason: str = "") -> Tombstone:
        """Close a stream for good: every later append raises `StreamTombstoned`. Its events stay
        (readers, projections and rebuilds still see them); tombstoning again changes nothing.
        An append already running when the tombstone commits may still commit after it: it is
        ordered before the tombstone, as if it had come a moment earlier."""
        with self.cursor() as cur:
            cur.execute(TOMBSTONE_PUT, [stream_id, reason])
            row = cur.execute(TOMBSTONE_GET, [stream_id]).fetchone()
        assert row is not None  # inserted now or before, and never deleted
        return Tombstone(*row)

    def tombstone_of(self, stream_id: UUID) -> Tombstone | None:
        """The stream's tombstone, None for a live stream."""
        with self.cursor() as cur:
            row = cur.execute(TOMBSTONE_GET, [stream_id], prepare=True).fetchone()
        return Tombstone(*row) if row else None

    def archive(self, stream_ids: Sequence[UUID]) -> int:
        """Move the events of these streams, those that are tombstoned, from the events table to
        the archive, in one transaction; how many events moved. Readers of a stream and
        `read_all(include_archived=True)` see them as before. Needs the owner role (a store on
        the `owner` alias): the log's trigger lets this one DELETE through (migration 0007)."""
        params = {"streams": list(stream_ids)}
        with transaction.atomic(using=self.using), self.cursor() as cur:
            cur.execute("SELECT set_config('eventfold.archiving', 'on', true)")
            cur.execute(ARCHIVE_COPY, params)
            cur.execute(ARCHIVE_DROP, params)
            moved = cur.rowcount
            cur.execute("SELECT set_config('eventfold.archiving', '', true)")
        return moved

    def tombstones(self, after: UUID | None = None, *, limit: int = 1000) -> list[Tombstone]:
        """Up to `limit` tombstones in stream id order, after the stream `after` (for an export)."""
        with self.cursor() as cur:
            rows = cur.execute(TOMBSTONES_AFTER, [after or FIRST_STREAM, limit]).fetchall()
        return [Tombstone(*row) for row in rows]

    # -- snapshots (of aggregate states, for the repository) ------------------------
    def snapshot(self, stream_id: UUID) -> tuple[int, int, str] | None:
        """The stream's snapshot as (version, snapshot version, state as JSON text), if any."""
        with self.cursor() as cur:
            return cur.execute(SNAPSHOT_GET, [stream_id]).fetchone()

    def save_snapshot(self, stream_id: UUID, category: str, version: int, snapshot_version: int, state: str) -> None:
        """Keep a state (JSON text) at a version, unless the kept one is newer and of the same shape."""
        with self.cursor() as cur:
            cur.execute(SNAPSHOT_PUT, [stream_id, category, version, snapshot_version, state])

    def drop_snapshot(self, stream_id: UUID) -> None:
        with self.cursor() as cur:
            cur.execute(SNAPSHOT_DROP, [stream_id])
