"""The event log's SQL: the append statement and its parameters, the reads, the snapshot rows.

Every statement on `eventstore_event` that the store, the browser and the timeline run is
composed here (with `psycopg.sql`), so that the table's shape, the read order and the horizon
are written once. The append statement is plain libpq text: it is prepared once per shape and
run through `libpq.exec_prepared` with binary UUIDs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from psycopg import sql

from eventstore.records import NewEvent, bucket_of
from eventstore.registry import EventType
from eventstore.retention import Policy

EMPTY: dict[str, Any] = {}
_UNSET = object()

TABLE = sql.Identifier("eventstore_event")
ARCHIVE = sql.Identifier("eventstore_archived_event")  # tombstoned streams' events, moved out of TABLE
COLUMNS = sql.SQL(
    "global_position, tx_id, stream_id, category, version, event_id, event_type, schema_version, "
    "textsend(data::text) AS data, textsend(metadata::text) AS metadata, recorded_at, "
    # RecordedEvent's stored_version and raw_data: filled in by the upcast, only when it changes the row
    "NULL::smallint AS stored_version, NULL::bytea AS raw_data"
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
    it: the primary key refuses version 1 of an existing stream. Every shape inserts nothing
    into a tombstoned stream (one probe of `eventstore_tombstone`'s primary key, in the same
    statement: no round trip more); no row back then means a tombstone or, for an exact
    version, a stream behind it, which the caller tells apart only then.

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
    live = "NOT EXISTS (SELECT 1 FROM eventstore_tombstone WHERE stream_id = $1)"
    if exact:
        base = "$4"
        reached = "($4 = 0 OR EXISTS (SELECT 1 FROM eventstore_event WHERE stream_id = $1 AND version = $4))"
        where = f" WHERE {live}" if new else f" WHERE {reached} AND {live}"
    else:
        base = "(SELECT coalesce(max(version), 0) FROM eventstore_event WHERE stream_id = $1)"
        where = f" WHERE {live}"
    text = (
        "INSERT INTO eventstore_event (stream_id, category, bucket, version, event_id, event_type, "
        f"schema_version, data, metadata) SELECT $1, $2, $3, {base} + x.n, x.e, "
        f"x.t, x.s, x.d, x.m FROM ({source}) AS x(e, t, s, d, m, n){where} "
        "RETURNING version, global_position"
    )
    size = "json" if n > VALUES_LIMIT else str(n)
    name = f"eventfold_append3_{'new' if new else 'exact' if exact else 'any'}_{size}"
    return AppendStatement(name.encode(), text.encode(), types, formats)


def append_values(
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
        json = orjson.Fragment(sealed.get(i) or event.payload.__pydantic_serializer__.to_json(event.payload))
        rows.append((str(UUID(bytes=ids[i])), entry.name, entry.version, json, event.metadata or EMPTY))
    values.append(dumps(rows))
    return values


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


def retention_conditions(policy: Policy, table: sql.Identifier = TABLE) -> list[sql.Composable]:
    """What keeps expired events (see `eventstore.retention`) out of a read of the log: for each
    category with a rule, its events younger than `max_age` and within the last `max_count` of
    their stream (a probe of the primary key for the stream's version, only for rows of that
    category). Nothing without a policy. The limits are written into the statement (they are
    settings, not input), so each policy has its own prepared statements."""
    conds: list[sql.Composable] = []
    for rule in policy:
        kept: list[sql.Composable] = []
        if rule.max_age is not None:
            kept.append(sql.SQL("recorded_at >= now() - make_interval(secs => {})").format(sql.Literal(rule.max_age)))
        if rule.max_count is not None:
            kept.append(
                sql.SQL(
                    "version > (SELECT max(newest.version) FROM {table} AS newest "
                    "WHERE newest.stream_id = {table}.stream_id) - {}"
                ).format(sql.Literal(rule.max_count), table=table)
            )
        conds.append(
            sql.SQL("(category <> {} OR ({}))").format(sql.Literal(rule.category), sql.SQL(" AND ").join(kept))
        )
    return conds


@functools.lru_cache(maxsize=32)
def read_all_statement(
    bucket: bool,
    categories: bool,
    types: bool,
    correlation: bool = False,
    policy: Policy = (),
    include_archived: bool = False,
) -> bytes:
    """The log after a checkpoint in read order; with `include_archived`, merged in read order
    with the archive (each table walked on its own read-order index, then the two merged)."""

    def select(table: sql.Identifier) -> sql.Composed:
        conds: list[sql.Composable] = [sql.SQL("(tx_id, global_position) > (%(tx)s::text::xid8, %(pos)s)"), HORIZON]
        if bucket:
            conds.insert(0, sql.SQL("bucket = %(bucket)s::int2"))
        conds += filter_conditions(categories, types, correlation)
        conds += retention_conditions(policy, table)
        return sql.SQL(
            "SELECT {cols} FROM {table} WHERE {conds} ORDER BY tx_id, global_position LIMIT %(limit)s"
        ).format(cols=COLUMNS, table=table, conds=sql.SQL(" AND ").join(conds))

    if not include_archived:
        return select(TABLE).as_bytes(None)
    return (
        sql.SQL("SELECT * FROM (({}) UNION ALL ({})) AS e ORDER BY tx_id, global_position LIMIT %(limit)s")
        .format(select(TABLE), select(ARCHIVE))
        .as_bytes(None)
    )


def read_stream_statement(
    from_version: bool, backwards: bool, to_version: bool, recorded_until: bool, policy: Policy = ()
) -> sql.Composed:
    """A stream's events in version order (descending with `backwards`, from the version down),
    from the events table or, for an archived stream, the archive (a probe of each one's primary
    key), its expired ones left out; parameters stream_id, limit, and from, to, until as asked for."""

    def select(table: sql.Identifier) -> sql.Composed:
        conds = [sql.SQL("stream_id = %(stream_id)s"), *retention_conditions(policy, table)]
        if from_version:
            conds.append(sql.SQL("version <= %(from)s" if backwards else "version >= %(from)s"))
        if to_version:
            conds.append(sql.SQL("version <= %(to)s"))
        if recorded_until:
            conds.append(sql.SQL("recorded_at <= %(until)s"))
        return sql.SQL("SELECT {cols} FROM {table} WHERE {conds}").format(
            cols=COLUMNS, table=table, conds=sql.SQL(" AND ").join(conds)
        )

    return sql.SQL("SELECT * FROM (({}) UNION ALL ({})) AS e ORDER BY version {dir} LIMIT %(limit)s").format(
        select(TABLE), select(ARCHIVE), dir=sql.SQL("DESC" if backwards else "ASC")
    )


STREAM_VERSION = sql.SQL(
    "SELECT greatest((SELECT max(version) FROM {table} WHERE stream_id = %(s)s), "
    "(SELECT max(version) FROM {archive} WHERE stream_id = %(s)s), 0)"
).format(table=TABLE, archive=ARCHIVE)
_MOVED = sql.SQL(
    "global_position, tx_id, stream_id, category, bucket, version, event_id, event_type, schema_version, "
    "data, metadata, recorded_at"
)
# Archiving (as the owner, `eventfold.archiving` on, see migration 0007): copy, then delete.
ARCHIVE_COPY = sql.SQL(
    "INSERT INTO {archive} ({cols}) SELECT {cols} FROM {table} AS e WHERE e.stream_id = ANY(%(streams)s) "
    "AND EXISTS (SELECT 1 FROM eventstore_tombstone t WHERE t.stream_id = e.stream_id) "
    "ON CONFLICT DO NOTHING"
).format(archive=ARCHIVE, table=TABLE, cols=_MOVED)
ARCHIVE_DROP = sql.SQL(
    "DELETE FROM {table} AS e WHERE e.stream_id = ANY(%(streams)s) "
    "AND EXISTS (SELECT 1 FROM eventstore_tombstone t WHERE t.stream_id = e.stream_id)"
).format(table=TABLE)
ARCHIVED_STREAMS = sql.SQL("SELECT DISTINCT stream_id FROM {archive} WHERE stream_id = ANY(%s)").format(archive=ARCHIVE)
FIND_EVENTS = sql.SQL(
    "SELECT event_id, stream_id, version, global_position FROM {table} WHERE event_id = ANY(%s)"
).format(table=TABLE)
HEAD = sql.SQL("SELECT tx_id, global_position FROM {table} ORDER BY tx_id DESC, global_position DESC LIMIT 1").format(
    table=TABLE
)

TOMBSTONE_PUT = sql.SQL(
    "INSERT INTO eventstore_tombstone (stream_id, reason) VALUES (%s, %s) ON CONFLICT (stream_id) DO NOTHING"
)
TOMBSTONES_AFTER = sql.SQL(
    "SELECT stream_id, tombstoned_at, reason FROM eventstore_tombstone WHERE stream_id > %s ORDER BY stream_id LIMIT %s"
)
TOMBSTONE_GET = sql.SQL("SELECT stream_id, tombstoned_at, reason FROM eventstore_tombstone WHERE stream_id = %s")


def export_tombstones_statement(policy: Policy, archive: bool) -> bytes:
    """A page of tombstones for an export: those made by %(until)s after the stream %(after)s, in
    stream id order, each with its stream's last version that the export holds (up to its head
    %(tx)s/%(pos)s, expired events left out; 0 for none) and whether the stream is archived."""

    def last_version(table: sql.Identifier) -> sql.Composed:
        conds = [
            sql.SQL("{}.stream_id = t.stream_id").format(table),
            sql.SQL("(tx_id, global_position) <= (%(tx)s::text::xid8, %(pos)s)"),
            *retention_conditions(policy, table),
        ]
        return sql.SQL("(SELECT max(version) FROM {} WHERE {})").format(table, sql.SQL(" AND ").join(conds))

    archived = sql.SQL("EXISTS (SELECT 1 FROM {} AS a WHERE a.stream_id = t.stream_id)").format(ARCHIVE)
    return (
        sql.SQL(
            "SELECT t.stream_id, t.tombstoned_at, t.reason, greatest({}, {}, 0), {} FROM eventstore_tombstone AS t "
            "WHERE t.stream_id > %(after)s AND t.tombstoned_at <= %(until)s ORDER BY t.stream_id LIMIT %(limit)s"
        )
        .format(
            last_version(TABLE),
            last_version(ARCHIVE) if archive else sql.SQL("0"),
            archived if archive else sql.SQL("false"),
        )
        .as_bytes(None)
    )


def expired_statement(max_age: bool, max_count: bool) -> sql.Composed:
    """Delete up to %(batch)s expired events of %(category)s (run as the owner, with
    `eventfold.expiring` set to that category: see migration 0006). The newest event of a
    stream always stays (readers still leave it out once expired), so the stream keeps its
    version and no append can ever reuse a version that was deleted."""
    newest = sql.SQL("(SELECT max(newest.version) FROM {table} AS newest WHERE newest.stream_id = e.stream_id)").format(
        table=TABLE
    )
    why: list[sql.Composable] = []
    if max_age:
        why.append(sql.SQL("e.recorded_at < now() - make_interval(secs => %(max_age)s)"))
    if max_count:
        why.append(sql.SQL("e.version <= {} - %(max_count)s").format(newest))
    return sql.SQL(
        "DELETE FROM {table} WHERE global_position IN (SELECT e.global_position FROM {table} AS e "
        "WHERE e.category = %(category)s AND ({why}) AND e.version < {newest} LIMIT %(batch)s)"
    ).format(table=TABLE, why=sql.SQL(" OR ").join(why), newest=newest)


SNAPSHOT_GET = sql.SQL("SELECT version, snapshot_version, state::text FROM eventstore_snapshot WHERE stream_id = %s")
SNAPSHOT_PUT = sql.SQL(
    "INSERT INTO eventstore_snapshot (stream_id, category, version, snapshot_version, state) "
    "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (stream_id) DO UPDATE SET "
    "version = EXCLUDED.version, snapshot_version = EXCLUDED.snapshot_version, "
    "state = EXCLUDED.state, taken_at = now() WHERE eventstore_snapshot.version < EXCLUDED.version "
    "OR eventstore_snapshot.snapshot_version <> EXCLUDED.snapshot_version"
)
SNAPSHOT_DROP = sql.SQL("DELETE FROM eventstore_snapshot WHERE stream_id = %s")
