"""The log as JSON lines, out and back in: disaster recovery by replay.

An export file is one JSON object per line, each with a `kind`:

- first, the header: `{"kind": "eventfold-export", "format": 1, "source": ..., "exported_at": ...,
  "head": {"tx_id": ..., "position": ...}}`;
- then every event up to that head in the log's read order, `(tx_id, global_position)`, as stored:
  `{"kind": "event", "position", "tx_id", "stream_id", "category", "version", "event_id", "type",
  "schema_version", "data", "metadata", "recorded_at"}`. The data is the stored row's, never
  upcast, personal fields still sealed;
- then (format 2) every tombstone, in stream id order: `{"kind": "tombstone", "stream_id",
  "tombstoned_at", "reason", "version", "archived"}`, where `version` is the stream's last version
  in this file (0: tombstoned before its first event) and `archived` whether its events were in
  the archive table;
- then every subject key, still wrapped by the master key (or null once forgotten):
  `{"kind": "subject_key", "subject_id", "wrapped_key" (base64), "created_at", "forgotten_at"}`;
- last, `{"kind": "end", "events": N, "streams": S, "tombstones": T, "subject_keys": K}` (format 1
  has no `tombstones`): a file without it was cut short, and is refused.

`export_log` reads the log in pages through the store's read cursor (the catch-up read, below
the read horizon, no transaction held between pages), so memory stays constant and appends go
on meanwhile: the export is the log's prefix up to the head it saw when it started.

`import_log` loads such a file into an empty store (or resumes one it had partly loaded: the
store then holds exactly the file's first events, checked by event id). It reads the file once,
validating every line, into temporary tables (COPY); checks uniqueness there; then inserts the
events in file order, in batches of their own transactions, keeping event ids, stream versions,
positions and recording times; then the tombstones, in one last transaction (a tombstone refuses
appends, not this import's inserts, but a store half loaded should not look closed). Archived
streams come back hot: the archive's trigger rules (migration 0007) let only `EventStore.archive`
move them, which `import_events` does once the projections have passed them
(`projections.recovery.archive_as_exported`).

Transaction ids cannot be kept: they are the new cluster's own (an old one could lie above its
horizon and hide the event from every reader). So each batch is one new transaction whose
events keep their file order, and a batch ends where the file's positions go down (two
transactions that ran side by side), which keeps the read order exactly.
"""

from __future__ import annotations

import base64
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson
from django.db import connections, transaction

from eventstore import libpq, retention
from eventstore.inputs import MAX_BIGINT, MAX_XID8
from eventstore.personal_data import SubjectKeys
from eventstore.records import START, Checkpoint, RecordedEvent, bucket_of
from eventstore.registry import EventRegistry
from eventstore.registry import registry as default_registry
from eventstore.statements import ORDERED_SCAN_ON, export_tombstones_statement, read_all_statement
from eventstore.store import EventStore

FORMAT = 2  # 2: tombstone lines, and their count on the end line
READABLE_FORMATS = (1, 2)
HEADER_KIND = "eventfold-export"
EXPORT_PAGE = 5000  # events per read of the log
IMPORT_BATCH = 10_000  # events per import transaction
KEY_PAGE = 5000
HORIZON_WAIT_S = 0.05  # the head's transaction is not below the horizon yet: look again after this
PROGRESS_EVERY_S = 0.2


class BadExport(ValueError):
    """The file is not a complete, valid export; the message names the line."""


class NotEmpty(ValueError):
    """The store holds events that are not the start of this file."""


# -- a progress bar on stderr (no dependency for it) -----------------------------------------------
class Progress:
    """`label [#####.....] done/total  rate/s` on one line of stderr, redrawn at most five times a second."""

    WIDTH = 30

    def __init__(self, label: str, total: int, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.label, self.total, self.stream, self.enabled = label, total, stream or sys.stderr, enabled
        self.began = self.shown = time.monotonic()
        self.drawn = False

    def __call__(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.shown < PROGRESS_EVERY_S):
            return
        self.shown, self.drawn = now, True
        total = max(self.total, done, 1)
        filled = int(self.WIDTH * done / total)
        rate = done / max(now - self.began, 1e-6)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done:,}/{total:,} {rate:,.0f}/s")
        self.stream.flush()

    def close(self, done: int) -> None:
        if self.enabled:
            self(done, final=True)
            self.stream.write("\n")
            self.stream.flush()


# -- export -----------------------------------------------------------------------------------------
@dataclass
class ExportSummary:
    events: int = 0
    streams: int = 0
    tombstones: int = 0
    subject_keys: int = 0
    bytes: int = 0
    seconds: float = 0.0
    head: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return round(self.events / self.seconds, 1) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "events_per_s": self.events_per_s}


def read_stored(store: EventStore, after: Checkpoint, limit: int, archive: bool | None = None) -> list[RecordedEvent]:
    """The catch-up read (`EventStore.read_all`'s statement, below the horizon, archived streams
    merged in read order, expired events left out) without upcasting or revealing: the events
    exactly as stored. `archive`: whether the log has its archive (`has_archive`, asked once per
    export; None: ask now)."""
    if archive is None:
        archive = has_archive(store)
    params = {"tx": str(after.tx_id), "pos": after.position, "limit": limit}
    statement = read_all_statement(False, False, False, False, store.retention, archive)
    with store.read_cursor() as cur:
        pg = cur.connection
        with pg.pipeline(), pg.transaction():
            cur.execute(ORDERED_SCAN_ON)
            cur.execute(statement, params, prepare=True)
        return libpq.fetch_all(cur)


def event_line(e: RecordedEvent) -> dict[str, Any]:
    return {
        "kind": "event",
        "position": e.position,
        "tx_id": e.tx_id,
        "stream_id": e.stream_id,
        "category": e.category,
        "version": e.version,
        "event_id": e.event_id,
        "type": e.type,
        "schema_version": e.schema_version,
        "data": e.data,
        "metadata": e.metadata,
        "recorded_at": e.recorded_at,
    }


def has_table(store: EventStore, table: str) -> bool:
    """Whether the log has this table: a database not yet migrated past 0005 (tombstones) or 0007
    (the archive), exported with the new code before upgrading (docs/upgrading.md), has none."""
    with store.cursor() as cur:
        row = cur.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
    return bool(row and row[0])


def has_archive(store: EventStore) -> bool:
    """Whether the log has its archive table (nothing is archived without one)."""
    return has_table(store, "eventstore_archived_event")


ARCHIVE_HEAD = (
    "SELECT tx_id::text::int8, global_position FROM eventstore_archived_event ORDER BY 1 DESC, 2 DESC LIMIT 1"
)


def log_head(store: EventStore, archive: bool) -> Checkpoint:
    """The log's last event in read order, archived or not: the hot table's head alone misses a
    closed account archived since its last event, when nothing was appended after it."""
    head = store.head()
    if archive:
        with store.cursor() as cur:
            row = cur.execute(ARCHIVE_HEAD).fetchone()
        if row and Checkpoint(*row) > head:
            return Checkpoint(*row)
    return head


def below_horizon(store: EventStore, head: Checkpoint) -> bool:
    """Whether readers see the head's transaction: a read that then finds nothing after its
    checkpoint has only expired events left (retention) and must not wait for them."""
    with store.cursor() as cur:
        row = cur.execute(
            "SELECT %s::text::xid8 < pg_snapshot_xmin(pg_current_snapshot())", [str(head.tx_id)]
        ).fetchone()
    return bool(row and row[0])


def count_until(store: EventStore, head: Checkpoint, archive: bool) -> int:
    """How many events lie up to the head (the progress bar's total), in the archive too if there is one."""
    tables = ["eventstore_event", "eventstore_archived_event"] if archive else ["eventstore_event"]
    counts = " + ".join(
        f"(SELECT count(*) FROM {table} WHERE (tx_id, global_position) <= (%s::text::xid8, %s))" for table in tables
    )
    with store.cursor() as cur:
        row = cur.execute(f"SELECT {counts}", [str(head.tx_id), head.position] * len(tables)).fetchone()
    return row[0] if row else 0


def tombstones(
    store: EventStore, head: Checkpoint, until: datetime, archive: bool
) -> Iterator[tuple[UUID, datetime, str, int, bool]]:
    """Every tombstone made by `until`, in pages by stream id: (stream, time, reason, the stream's
    last version in the export, archived)."""
    statement = export_tombstones_statement(store.retention, archive)
    params: dict[str, Any] = {"tx": str(head.tx_id), "pos": head.position, "until": until, "limit": KEY_PAGE}
    params["after"] = UUID(int=0)
    while True:
        with store.cursor() as cur:
            rows = cur.execute(statement, params).fetchall()
        yield from rows
        if len(rows) < KEY_PAGE:
            return
        params["after"] = rows[-1][0]


def subject_keys(store: EventStore) -> Iterator[tuple[UUID, bytes | None, datetime, datetime | None]]:
    """Every subject key as stored (wrapped), in pages by subject id."""
    after = UUID(int=0)
    while True:
        with store.cursor() as cur:
            rows = cur.execute(
                "SELECT subject_id, wrapped_key, created_at, forgotten_at FROM eventstore_subject_key "
                "WHERE subject_id > %s ORDER BY subject_id LIMIT %s",
                [after, KEY_PAGE],
            ).fetchall()
        yield from rows
        if len(rows) < KEY_PAGE:
            return
        after = rows[-1][0]


def export_log(
    out: IO[bytes],
    *,
    store: EventStore | None = None,
    progress: Callable[[int, int], None] | None = None,
    page: int = EXPORT_PAGE,
) -> ExportSummary:
    """Write the log up to its current head to `out`; `progress(done, total)` after each page."""
    store = store or EventStore()
    began = time.perf_counter()
    archive = has_archive(store)
    head = log_head(store, archive)
    with store.cursor() as cur:  # tombstones made after this moment belong to a later export
        row = cur.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    until = row[0]
    total = count_until(store, head, archive)
    summary = ExportSummary(head={"tx_id": head.tx_id, "position": head.position})
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE

    def write(obj: dict[str, Any]) -> None:
        line = dumps(obj, option=newline)
        out.write(line)
        summary.bytes += len(line)

    settings = connections[store.using].settings_dict
    source = {"database": settings.get("NAME"), "host": settings.get("HOST") or socket.gethostname()}
    exported_at = datetime.now(UTC)
    write({"kind": HEADER_KIND, "format": FORMAT, "source": source, "exported_at": exported_at, "head": summary.head})
    after = START
    while after < head:
        events = read_stored(store, after, page, archive)
        if not events and below_horizon(store, head):  # what is left up to the head has expired
            break
        if not events:  # the head's transaction is committed, an older one is not yet: wait for it
            time.sleep(HORIZON_WAIT_S)
            continue
        for e in events:
            if e.checkpoint > head:
                break
            write(event_line(e))
            summary.events += 1
            summary.streams += e.version == 1
        after = events[-1].checkpoint
        if progress is not None:
            progress(summary.events, total)
    if has_table(store, "eventstore_tombstone"):
        for stream_id, tombstoned_at, reason, version, archived in tombstones(store, head, until, archive):
            write(
                {
                    "kind": "tombstone",
                    "stream_id": stream_id,
                    "tombstoned_at": tombstoned_at,
                    "reason": reason,
                    "version": version,
                    "archived": archived,
                }
            )
            summary.tombstones += 1
    for subject_id, wrapped, created_at, forgotten_at in subject_keys(store):
        wrapped_key = None if wrapped is None else base64.b64encode(bytes(wrapped)).decode()
        write(
            {
                "kind": "subject_key",
                "subject_id": subject_id,
                "wrapped_key": wrapped_key,
                "created_at": created_at,
                "forgotten_at": forgotten_at,
            }
        )
        summary.subject_keys += 1
    counts = ("events", "streams", "tombstones", "subject_keys")
    write({"kind": "end", **{name: getattr(summary, name) for name in counts}})
    out.flush()
    summary.seconds = time.perf_counter() - began
    return summary


# -- import -----------------------------------------------------------------------------------------
@dataclass
class ImportSummary:
    events: int = 0  # in the file
    imported: int = 0  # inserted by this run
    already: int = 0  # found in the store from an earlier run
    streams: int = 0
    tombstones: int = 0
    archived: int = 0  # streams the file says were archived
    subject_keys: int = 0
    bytes: int = 0
    seconds: float = 0.0
    archived_streams: list[UUID] = field(default_factory=list)  # their ids, for `archive_as_exported`

    @property
    def events_per_s(self) -> float:
        return round(self.imported / self.seconds, 1) if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        counts = {k: v for k, v in asdict(self).items() if k != "archived_streams"}
        return {**counts, "seconds": round(self.seconds, 3), "events_per_s": self.events_per_s}


STAGE = """
CREATE TEMP TABLE IF NOT EXISTS import_event (
    seq bigint PRIMARY KEY, line bigint NOT NULL, global_position bigint NOT NULL, stream_id uuid NOT NULL,
    category text NOT NULL, bucket smallint NOT NULL, version integer NOT NULL, event_id uuid NOT NULL,
    event_type text NOT NULL, schema_version smallint NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE TEMP TABLE IF NOT EXISTS import_subject_key (
    line bigint NOT NULL, subject_id uuid NOT NULL, wrapped_key bytea, created_at timestamptz NOT NULL,
    forgotten_at timestamptz
);
CREATE TEMP TABLE IF NOT EXISTS import_tombstone (
    line bigint NOT NULL, stream_id uuid PRIMARY KEY, tombstoned_at timestamptz NOT NULL, reason text NOT NULL,
    archived boolean NOT NULL
);
TRUNCATE import_event, import_subject_key, import_tombstone;
"""
EVENT_COLUMNS = (
    "seq, line, global_position, stream_id, category, bucket, version, event_id, event_type, schema_version, "
    "data, metadata, recorded_at"
)
DUPLICATES = """
SELECT min(line), max(line) FROM import_event GROUP BY {column} HAVING count(*) > 1 ORDER BY 1 LIMIT 1
"""
DUPLICATE_KEYS = "SELECT min(line), max(line) FROM import_subject_key GROUP BY subject_id HAVING count(*) > 1 LIMIT 1"
# The store's events, hot or archived (by an earlier, complete run), and those that are the file's
# first ones, the same event at the same place.
PRESENT = "SELECT (SELECT count(*) FROM eventstore_event) + (SELECT count(*) FROM eventstore_archived_event)"
MATCHING = """
SELECT count(*) FROM (
    SELECT event_id, global_position, stream_id, version FROM eventstore_event
    UNION ALL SELECT event_id, global_position, stream_id, version FROM eventstore_archived_event
) AS e JOIN import_event s ON s.event_id = e.event_id
WHERE s.seq <= %s AND s.global_position = e.global_position AND s.stream_id = e.stream_id AND s.version = e.version
"""
# A tombstone of the store's that the file does not have, the same (an earlier run put the file's).
TOMBSTONES_DIFFERING = """
SELECT t.stream_id FROM eventstore_tombstone t LEFT JOIN import_tombstone i USING (stream_id)
WHERE i.stream_id IS NULL OR i.tombstoned_at <> t.tombstoned_at OR i.reason <> t.reason LIMIT 1
"""
INSERT_TOMBSTONES = """
INSERT INTO eventstore_tombstone (stream_id, tombstoned_at, reason)
SELECT stream_id, tombstoned_at, reason FROM import_tombstone ORDER BY line
ON CONFLICT (stream_id) DO NOTHING
"""
KEYS_DIFFERING = """
SELECT k.line FROM import_subject_key k JOIN eventstore_subject_key s USING (subject_id)
WHERE s.wrapped_key IS DISTINCT FROM k.wrapped_key ORDER BY k.line LIMIT 1
"""
INSERT_KEYS = """
INSERT INTO eventstore_subject_key (subject_id, wrapped_key, created_at, forgotten_at)
SELECT subject_id, wrapped_key, created_at, forgotten_at FROM import_subject_key ORDER BY line
ON CONFLICT (subject_id) DO NOTHING
"""
# Positions as exported (an identity column takes given values with OVERRIDING SYSTEM VALUE);
# tx_id is left to its default, this transaction's id.
INSERT_EVENTS = """
INSERT INTO eventstore_event (global_position, stream_id, category, bucket, version, event_id, event_type,
    schema_version, data, metadata, recorded_at)
OVERRIDING SYSTEM VALUE
SELECT global_position, stream_id, category, bucket, version, event_id, event_type, schema_version, data,
    metadata, recorded_at
FROM import_event WHERE seq BETWEEN %s AND %s ORDER BY seq
"""
# New appends continue after the last imported position.
POSITIONS_AFTER = "SELECT setval(pg_get_serial_sequence('eventstore_event', 'global_position'), %s)"


@dataclass
class Staged:
    events: int = 0
    streams: int = 0
    tombstones: int = 0
    archived: int = 0
    subject_keys: int = 0
    bytes: int = 0
    max_position: int = 0
    cuts: list[int] = field(default_factory=list)  # seqs whose position is below the one before: a new batch


def _require(condition: bool, line: int, message: str) -> None:
    if not condition:
        raise BadExport(f"line {line}: {message}")


def _int(obj: dict[str, Any], name: str, line: int, minimum: int, maximum: int = MAX_BIGINT) -> int:
    value = obj.get(name)
    _require(
        type(value) is int and minimum <= value <= maximum,
        line,
        f"{name} must be a whole number from {minimum} to {maximum}",
    )
    return value  # type: ignore[return-value]  # checked just above


def _uuid(obj: dict[str, Any], name: str, line: int) -> UUID:
    value = obj.get(name)
    try:
        if isinstance(value, str):
            return UUID(value)
    except ValueError:
        pass
    raise BadExport(f"line {line}: {name} must be a UUID")


def _time(obj: dict[str, Any], name: str, line: int, *, optional: bool = False) -> datetime | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed
    except ValueError:
        pass
    raise BadExport(f"line {line}: {name} must be an ISO 8601 time with its offset")


class _Validator:
    """Every line's checks that need no database: shapes, known types, versions, read order."""

    def __init__(self, registry: EventRegistry, expiring: frozenset[str] = frozenset()) -> None:
        self.registry = registry
        self.expiring = expiring  # categories with a retention rule: their streams may start later
        self.streams: dict[UUID, tuple[str, int]] = {}  # category and last version
        self.last = Checkpoint(-1, -1)
        self.last_position = 0

    def event(self, obj: dict[str, Any], line: int) -> tuple[Any, ...]:
        position = _int(obj, "position", line, 1)
        tx_id = _int(obj, "tx_id", line, 0, MAX_XID8)
        stream_id = _uuid(obj, "stream_id", line)
        event_id = _uuid(obj, "event_id", line)
        category, name = obj.get("category"), obj.get("type")
        _require(isinstance(category, str) and category != "", line, "category must be a non-empty text")
        _require(isinstance(name, str) and name in self.registry, line, f"unknown event type {name!r}")
        entry = self.registry.get(name)  # type: ignore[arg-type]  # a str, checked just above
        schema_version = _int(obj, "schema_version", line, 1, entry.version)
        missing = [v for v in range(schema_version, entry.version) if v not in entry.upcasters]
        _require(not missing, line, f"{name} v{schema_version} has no upcaster from v{missing[0] if missing else 0}")
        version = _int(obj, "version", line, 1, 2**31 - 1)
        before = self.streams.get(stream_id)
        expected = 1 if before is None else before[1] + 1
        expired = before is None and category in self.expiring and version > 1  # its first events expired
        _require(
            version == expected or expired,
            line,
            f"stream {stream_id} has version {version} where {expected} was due"
            + ("" if before else f" (no retention rule for {category!r} here, so none of its events expired)"),
        )
        _require(before is None or before[0] == category, line, f"stream {stream_id} changes its category")
        self.streams[stream_id] = (category, version)  # type: ignore[assignment]  # a str, checked above
        data, metadata = obj.get("data"), obj.get("metadata")
        _require(isinstance(data, dict) and isinstance(metadata, dict), line, "data and metadata must be objects")
        recorded_at = _time(obj, "recorded_at", line)
        at = Checkpoint(tx_id, position)
        _require(at > self.last, line, "events are not in the log's read order (tx_id, position)")
        self.last = at
        return (
            position,
            stream_id,
            category,
            bucket_of(stream_id),
            version,
            event_id,
            name,
            schema_version,
            orjson.dumps(data).decode(),
            orjson.dumps(metadata).decode(),
            recorded_at,
        )

    def tombstone(self, obj: dict[str, Any], line: int) -> tuple[Any, ...]:
        """A tombstone's fields; its stream is checked against the events by `check_tombstones`."""
        stream_id = _uuid(obj, "stream_id", line)
        tombstoned_at = _time(obj, "tombstoned_at", line)
        reason, archived = obj.get("reason"), obj.get("archived")
        _require(isinstance(reason, str) and "\x00" not in reason, line, "reason must be a text without NUL")
        _require(type(archived) is bool, line, "archived must be true or false")
        version = _int(obj, "version", line, 0, 2**31 - 1)
        _require(not archived or version > 0, line, "an archived stream without events")
        return (line, stream_id, tombstoned_at, reason, archived, version)

    def check_tombstones(self, tombstones: list[tuple[Any, ...]]) -> None:
        """Each tombstone names a stream whose last event in the file is at its version (none for 0),
        once: a tombstone of a stream the file lost, or cut short, would close the wrong history."""
        seen: set[UUID] = set()
        for line, stream_id, _, _, _, version in tombstones:
            _require(stream_id not in seen, line, f"stream {stream_id} is tombstoned twice")
            seen.add(stream_id)
            category, last = self.streams.get(stream_id, ("", 0))
            if version and not last:
                raise BadExport(f"line {line}: a tombstone for stream {stream_id}, which has no events in the file")
            expired = category in self.expiring and last < version  # its newest expired while exporting
            _require(
                last == version or expired,
                line,
                f"the tombstone says stream {stream_id} ends at version {version}; the file's ends at {last}",
            )

    @staticmethod
    def subject_key(obj: dict[str, Any], line: int) -> tuple[Any, ...]:
        subject_id = _uuid(obj, "subject_id", line)
        wrapped = obj.get("wrapped_key")
        forgotten_at = _time(obj, "forgotten_at", line, optional=True)
        created_at = _time(obj, "created_at", line)
        raw = None
        if wrapped is not None:
            try:
                raw = base64.b64decode(wrapped, validate=True) if isinstance(wrapped, str) else None
            except ValueError:
                raw = None
            _require(raw is not None, line, "wrapped_key must be base64 or null")
        _require((raw is None) == (forgotten_at is not None), line, "a key is either wrapped or forgotten")
        return (subject_id, raw, created_at, forgotten_at)


def stage(path: Path, cur: Any, registry: EventRegistry, progress: Callable[[int], None] | None = None) -> Staged:
    """Read and check every line of the file into the temporary tables (one COPY each);
    `progress(bytes read)` now and then."""
    staged = Staged()
    check = _Validator(registry, frozenset(rule.category for rule in retention.configured()))
    cur.execute(STAGE)
    ended, file_format = False, FORMAT
    keys = []  # one COPY at a time on a connection: the keys (one per subject) follow the events'
    tombstones = []  # likewise, and each is checked against its stream once every event is read
    with path.open("rb") as f, cur.copy(f"COPY import_event ({EVENT_COLUMNS}) FROM STDIN") as events:
        for line_no, raw in enumerate(f, start=1):
            staged.bytes += len(raw)
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise BadExport(f"line {line_no}: not JSON") from None
            _require(isinstance(obj, dict), line_no, "not a JSON object")
            kind = obj.get("kind")
            if line_no == 1:
                _require(kind == HEADER_KIND, 1, "not an Eventfold export (its first line is the header)")
                _require(
                    obj.get("format") in READABLE_FORMATS, 1, f"export format {obj.get('format')!r}; this reads 1 and 2"
                )
                file_format = obj["format"]
                continue
            _require(not ended, line_no, "a line after the last one (end)")
            if kind == "event":
                row = check.event(obj, line_no)
                staged.events += 1
                if row[0] < check.last_position:
                    staged.cuts.append(staged.events)
                check.last_position = row[0]
                staged.max_position = max(staged.max_position, row[0])
                staged.streams += row[4] == 1
                events.write_row((staged.events, line_no, *row))
                if progress is not None and staged.events % 1000 == 0:
                    progress(staged.bytes)
            elif kind == "subject_key":
                keys.append((line_no, *check.subject_key(obj, line_no)))
                staged.subject_keys += 1
            elif kind == "tombstone" and file_format >= 2:
                tombstones.append(check.tombstone(obj, line_no))
                staged.tombstones += 1
                staged.archived += tombstones[-1][4]
            elif kind == "end":
                _end(obj, line_no, staged, file_format)
                ended = True
            else:
                raise BadExport(f"line {line_no}: unknown kind {kind!r}")
    if staged.bytes == 0:
        raise BadExport("the file is empty")
    if not ended:
        raise BadExport("the file ends without its last line (end): the export was cut short")
    check.check_tombstones(tombstones)
    with cur.copy(
        "COPY import_subject_key (line, subject_id, wrapped_key, created_at, forgotten_at) FROM STDIN"
    ) as copy:
        for key in keys:
            copy.write_row(key)
    with cur.copy("COPY import_tombstone (line, stream_id, tombstoned_at, reason, archived) FROM STDIN") as copy:
        for tombstone in tombstones:
            copy.write_row(tombstone[:5])
    return staged


def _end(obj: dict[str, Any], line: int, staged: Staged, file_format: int) -> None:
    """The last line's counts against what the file held (format 1 counts no tombstones)."""
    names = (
        ("events", "streams", "tombstones", "subject_keys")
        if file_format >= 2
        else ("events", "streams", "subject_keys")
    )
    said = tuple(obj.get(name) for name in names)
    held = tuple(getattr(staged, name) for name in names)
    if said != held:
        words = [name.replace("_", " ") for name in names]
        raise BadExport(
            f"line {line}: the file says {', '.join(f'{n} {w}' for n, w in zip(said, words, strict=True))}; "
            f"it holds {', '.join(f'{n} {w}' for n, w in zip(held, words, strict=True))}"
        )


def _check_unique(cur: Any) -> None:
    for column, what in (("event_id", "event id"), ("global_position", "position")):
        row = cur.execute(DUPLICATES.format(column=column)).fetchone()
        if row:
            raise BadExport(f"lines {row[0]} and {row[1]}: the same {what} twice")
    row = cur.execute(DUPLICATE_KEYS).fetchone()
    if row:
        raise BadExport(f"lines {row[0]} and {row[1]}: the same subject key twice")


def _check_master_key(cur: Any, using: str) -> None:
    """The master key here must unwrap the exported keys, or every restored name reads as forgotten."""
    row = cur.execute(
        "SELECT line, subject_id, wrapped_key FROM import_subject_key WHERE wrapped_key IS NOT NULL LIMIT 1"
    ).fetchone()
    if row is None:
        return
    try:
        SubjectKeys(using)._unwrap(row[1], bytes(row[2]))
    except Exception:
        raise BadExport(
            f"line {row[0]}: this EVENTFOLD_MASTER_KEY does not unwrap the exported subject keys: "
            "set the master key of the deployment that made the export"
        ) from None


def batches(first: int, last: int, cuts: list[int], size: int) -> Iterator[tuple[int, int]]:
    """(from, to) seqs of each import transaction: at most `size` events, a new one at every cut."""
    pending = sorted(c for c in cuts if c > first)
    start = first
    while start <= last:
        end = min(start + size - 1, last)
        while pending and pending[0] <= start:
            pending.pop(0)
        if pending and pending[0] <= end:
            end = pending[0] - 1
        yield start, end
        start = end + 1


def import_log(
    path: Path,
    *,
    using: str = "default",
    registry: EventRegistry = default_registry,
    batch: int = IMPORT_BATCH,
    on_batch: Callable[[Any], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportSummary:
    """Load an export into an empty store (or finish loading it), on the connection `using`
    (the owner role's: it sets the log's position sequence). `on_batch(cursor)` runs at the end
    of each batch's transaction, after its events are inserted; `progress(phase, done, total)`."""
    began = time.perf_counter()
    conn = connections[using]
    conn.ensure_connection()
    if conn.in_atomic_block:
        raise RuntimeError("an import commits batch by batch: run it outside any transaction")
    summary = ImportSummary()
    with conn.cursor() as django_cur:
        cur = django_cur.cursor  # psycopg's own: COPY
        size = path.stat().st_size
        staged = stage(path, cur, registry, None if progress is None else lambda n: progress("checking bytes", n, size))
        summary.events, summary.streams, summary.subject_keys = staged.events, staged.streams, staged.subject_keys
        summary.tombstones, summary.archived = staged.tombstones, staged.archived
        summary.bytes = staged.bytes
        _check_unique(cur)
        _check_master_key(cur, using)
        present = cur.execute(PRESENT).fetchone()[0]
        matching = cur.execute(MATCHING, [present]).fetchone()[0] if present else 0
        if present and (present > staged.events or matching != present):
            raise NotEmpty(
                f"the store holds {present:,} events, {present - matching:,} of them not the start of this "
                "file: import_events loads into an empty store only (a new database, migrated), or "
                "finishes an import of the same file"
            )
        row = cur.execute(KEYS_DIFFERING).fetchone()
        if row:
            raise NotEmpty(f"line {row[0]}: the store already holds another key for this subject")
        row = cur.execute(TOMBSTONES_DIFFERING).fetchone()
        if row:
            raise NotEmpty(f"the store holds a tombstone of stream {row[0]} that is not this file's")
        summary.already = present
        with transaction.atomic(using=using):
            cur.execute(INSERT_KEYS)
            if staged.max_position:
                cur.execute(POSITIONS_AFTER, [staged.max_position])
        for first, last in batches(present + 1, staged.events, staged.cuts, batch):
            with transaction.atomic(using=using):
                cur.execute(INSERT_EVENTS, [first, last])
                if on_batch is not None:
                    on_batch(cur)
            summary.imported += last - first + 1
            if progress is not None:
                progress("importing", present + summary.imported, staged.events)
        with transaction.atomic(using=using):
            cur.execute(INSERT_TOMBSTONES)
        rows = cur.execute("SELECT stream_id FROM import_tombstone WHERE archived ORDER BY line").fetchall()
        summary.archived_streams = [row[0] for row in rows]
        cur.execute("DROP TABLE import_event, import_subject_key, import_tombstone")
    summary.seconds = time.perf_counter() - began
    return summary
