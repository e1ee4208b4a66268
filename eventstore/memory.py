"""An event store in memory, with the same contract as `EventStore`.

It is for fast unit tests of command handlers and process-manager steps: no database, no
Django settings (personal data is sealed with subject keys this store holds itself, so not
even the master key). One contract suite (tests/integration/eventstore/contract/) runs
against both stores: expected versions and `ConcurrencyError`, idempotent event ids and
`DuplicateEventError`, `read_stream`, `read_all` with checkpoints and filters, `head`,
`stream_version`, tombstones, retention, validation and upcasting through the registry, personal data and
forgetting, the append hooks, snapshots and the `Repository` on top.

What it does not imitate: transactions (an append is committed when it returns, and Django's
`transaction.atomic` does not undo it) and the horizon (every append is at once visible to
`read_all`). Each append gets the next fake transaction id, so checkpoints are (tx_id,
position) pairs in the same read order as the real log's. The append hooks get `using` as
their database alias ("memory" unless given): subscribers that act on Django's database
(`transaction.on_commit`) need a real one, so a unit test replaces `hooks.after_append` or
runs in `hooks.suspended()`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
from pydantic import BaseModel

from eventstore import hooks, personal_data
from eventstore.append_rules import check_append, original_append
from eventstore.errors import ConcurrencyError, StreamTombstoned
from eventstore.ids import new_event_ids
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
    bucket_of,
)
from eventstore.registry import EventRegistry, EventType
from eventstore.registry import registry as default_registry
from eventstore.retention import Policy, rule_of

EMPTY: dict[str, Any] = {}


class InMemorySubjectKeys:
    """Subject keys in a dict: plain, since they never leave the process."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes | None] = {}

    def get(self, subject_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys of the subjects that have one (None where the subject was forgotten)."""
        return {sid: self._keys[sid] for sid in set(subject_ids) if sid in self._keys}

    def store(self, subject_id: UUID, key: bytes) -> bool:
        """Keep a new subject key; False when the subject already has one (or was forgotten)."""
        if subject_id in self._keys:
            return False
        self._keys[subject_id] = key
        return True

    def forget(self, subject_id: UUID) -> bool:
        """Destroy a subject's key: its personal data becomes unreadable, for good."""
        if self._keys.get(subject_id) is None:
            return False
        self._keys[subject_id] = None
        return True


class _Stored(NamedTuple):
    event: RecordedEvent  # data and metadata empty: each read decodes its own copies
    data: bytes
    metadata: bytes


class InMemoryEventStore:
    """The event log in this object: same methods, same contract as `EventStore`."""

    def __init__(
        self, registry: EventRegistry = default_registry, *, using: str = "memory", retention: Policy = ()
    ) -> None:
        self.using = using
        self.registry = registry
        self.retention = retention  # given, never read from settings
        self.subject_keys = InMemorySubjectKeys()
        self._log: list[_Stored] = []
        self._order: list[tuple[int, int]] = []  # each event's checkpoint, for bisecting
        self._streams: dict[UUID, list[_Stored]] = {}
        self._placed: dict[UUID, tuple[UUID, int, int]] = {}  # event id -> (stream, version, position)
        self._snapshots: dict[UUID, tuple[int, int, str]] = {}
        self._tombstones: dict[UUID, Tombstone] = {}
        self._archived: set[UUID] = set()
        self._tx_id = 0
        self._lock = threading.Lock()

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once what was appended so far is committed: at once, since every append is."""
        fn()

    # -- writing ----------------------------------------------------------------
    def append(
        self,
        stream_id: UUID,
        category: str,
        events: Sequence[NewEvent | BaseModel],
        *,
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append `events` to a stream atomically, as `EventStore.append` does."""
        batch, expected = check_append(category, events, expected_version)
        entries = [self.registry.of(e.payload) for e in batch]
        with self._lock:
            result = self._append(stream_id, category, batch, entries, expected_version, expected)
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
    ) -> AppendResult:
        given = [e.event_id for e in batch]
        made = iter(new_event_ids(sum(1 for i in given if i is None)))
        ids = [UUID(bytes=next(made)) if i is None else i for i in given]
        batch = [e if e.event_id is not None else e._replace(event_id=i) for e, i in zip(batch, ids, strict=True)]
        personal = self.registry.personal_types
        sealed = None
        if personal and any(entry.name in personal for entry in entries):
            sealed = personal_data.seal(self.subject_keys, stream_id, batch, entries)
        stream = self._streams.get(stream_id, [])
        current = len(stream)
        if stream_id in self._tombstones:
            raise StreamTombstoned(stream_id)
        if expected and current < expected:  # the stream has not reached the expected version
            raise ConcurrencyError(stream_id, expected_version, current)
        base = current if expected is None else expected
        if base < current or len(set(ids)) < len(ids) or any(i in self._placed for i in ids):
            if any(i is not None for i in given):
                found = {i: self._placed[i] for i in ids if i in self._placed}
                original = original_append(stream_id, given, found, expected_version)
                if original is not None:
                    return original
            raise ConcurrencyError(stream_id, expected_version, current)
        self._tx_id += 1
        now, dumps, position = datetime.now(UTC), orjson.dumps, len(self._log)
        versions, positions = [], []
        for i, (event, entry) in enumerate(zip(batch, entries, strict=True)):
            position += 1
            payload = event.payload
            data = (sealed.data.get(i) if sealed else None) or payload.__pydantic_serializer__.to_json(payload)
            recorded = RecordedEvent(
                position, self._tx_id, stream_id, category, base + i + 1, ids[i], entry.name, entry.version, {}, {}, now
            )
            stored = _Stored(recorded, data, dumps(event.metadata or EMPTY))
            self._log.append(stored)
            self._order.append((self._tx_id, position))
            stream.append(stored)
            self._placed[ids[i]] = (stream_id, base + i + 1, position)
            versions.append(base + i + 1)
            positions.append(position)
        self._streams[stream_id] = stream
        if sealed is not None and sealed.new_key is not None:
            self.subject_keys.store(stream_id, sealed.new_key)
        return AppendResult(stream_id, versions, positions, ids)

    # -- reading ----------------------------------------------------------------
    def _events(self, stored: Iterable[_Stored]) -> list[RecordedEvent]:
        """Fresh copies of stored events as readers see them: upcast, personal data revealed."""
        loads = orjson.loads
        events = [s.event._replace(data=loads(s.data), metadata=loads(s.metadata)) for s in stored]
        events = self.registry.upcast_events(events)
        if self.registry.personal_types:
            personal_data.reveal(self.subject_keys, self.registry.personal_types, events)
        return events

    def stream_version(self, stream_id: UUID) -> int:
        """The stream's current version, 0 when it has no events."""
        return len(self._streams.get(stream_id, ()))

    def _kept(self, stored: list[_Stored]) -> list[_Stored]:
        """The events that have not expired (see `eventstore.retention`)."""
        if not self.retention:
            return stored
        now = datetime.now(UTC)
        kept = []
        for s in stored:
            e = s.event
            rule = rule_of(self.retention, e.category)
            if rule is None or not rule.expired(e.recorded_at, e.version, len(self._streams[e.stream_id]), now):
                kept.append(s)
        return kept

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
        with self._lock:
            found = self._kept(list(self._streams.get(stream_id, ())))
        if from_version is not None:
            found = [
                s for s in found if (s.event.version <= from_version if backwards else s.event.version >= from_version)
            ]
        if to_version is not None:
            found = [s for s in found if s.event.version <= to_version]
        if recorded_until is not None:
            found = [s for s in found if s.event.recorded_at <= recorded_until]
        if backwards:
            found.reverse()
        return self._events(found if limit is None else found[:limit])

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
        """Up to `limit` events after the checkpoint, in read order (archived streams' events only
        with `include_archived`)."""
        found: list[_Stored] = []
        with self._lock:
            i = bisect.bisect_right(self._order, (after.tx_id, after.position))
            while i < len(self._log) and len(found) < limit:
                stored, i = self._log[i], i + 1
                e = stored.event
                if not include_archived and e.stream_id in self._archived:
                    continue
                if bucket is not None and bucket_of(e.stream_id) != bucket:
                    continue
                if (categories and e.category not in categories) or (types and e.type not in types):
                    continue
                if correlation_id and orjson.loads(stored.metadata).get("correlation_id") != correlation_id:
                    continue
                if self._kept([stored]):
                    found.append(stored)
        events = self._events(found)
        return ReadResult(events, events[-1].checkpoint if events else after)

    def head(self) -> Checkpoint:
        """The last event in read order (START for an empty log)."""
        return self._log[-1].event.checkpoint if self._log else START

    # -- tombstones ----------------------------------------------------------------
    def tombstone(self, stream_id: UUID, *, reason: str = "") -> Tombstone:
        """Close a stream for good, as `EventStore.tombstone` does."""
        with self._lock:
            return self._tombstones.setdefault(stream_id, Tombstone(stream_id, datetime.now(UTC), reason))

    def tombstone_of(self, stream_id: UUID) -> Tombstone | None:
        """The stream's tombstone, None for a live stream."""
        return self._tombstones.get(stream_id)

    def archive(self, stream_ids: Sequence[UUID]) -> int:
        """Archive the tombstoned ones of these streams, as `EventStore.archive` does."""
        with self._lock:
            moved = [sid for sid in stream_ids if sid in self._tombstones and sid not in self._archived]
            self._archived.update(moved)
            return sum(len(self._streams.get(sid, ())) for sid in moved)

    def tombstones(self, after: UUID | None = None, *, limit: int = 1000) -> list[Tombstone]:
        """Up to `limit` tombstones in stream id order, after the stream `after` (for an export)."""
        with self._lock:
            found = sorted(t for t in self._tombstones.values() if after is None or t.stream_id > after)
        return found[:limit]

    # -- snapshots (of aggregate states, for the repository) ------------------------
    def snapshot(self, stream_id: UUID) -> tuple[int, int, str] | None:
        """The stream's snapshot as (version, snapshot version, state as JSON text), if any."""
        return self._snapshots.get(stream_id)

    def save_snapshot(self, stream_id: UUID, category: str, version: int, snapshot_version: int, state: str) -> None:
        """Keep a state (JSON text) at a version, unless the kept one is newer and of the same shape."""
        known = self._snapshots.get(stream_id)
        if known is None or known[0] < version or known[1] != snapshot_version:
            self._snapshots[stream_id] = (version, snapshot_version, state)

    def drop_snapshot(self, stream_id: UUID) -> None:
        self._snapshots.pop(stream_id, None)
