"""Loading and saving aggregates (see `eventstore.aggregate` for their shape) on either store.

`Repository` loads an aggregate by folding its stream (starting from the
latest snapshot when one fits), saves its pending events with the expected
version, writes a snapshot every N events, and loads "as of version N" or
"as of time T" by stopping the same fold early. Snapshots are kept by the store
(`snapshot`, `save_snapshot`, `drop_snapshot`): a table beside the log in PostgreSQL,
a dict in `InMemoryEventStore`. `StateCache` keeps recent states between loads in
this process.

A load trusts a snapshot's state, and the role that writes snapshots (the application's) is not
trusted with history, so a snapshot is sealed: it names the last event it folded and carries a MAC
(HMAC-SHA256 keyed by SECRET_KEY, or one of SECRET_KEY_FALLBACKS) over its stream, versions, that
event and the state. A load uses it only if the MAC holds and the log has that very event at the
snapshot's version; otherwise it folds the stream from the start and drops the snapshot once the
load's transaction commits (a drop is a write, and an append must be its transaction's first).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac
from pydantic import BaseModel

from eventstore.aggregate import AggregateLike
from eventstore.contract import Store
from eventstore.errors import AggregateNotFound
from eventstore.records import ANY, NO_STREAM, AppendResult, ExpectedVersion, NewEvent, RecordedEvent
from eventstore.store import EventStore

A = TypeVar("A", bound=AggregateLike)
log = logging.getLogger(__name__)
SNAPSHOT_SALT = "eventstore.repository.snapshot"


def _mac(
    category: str, stream_id: UUID, version: int, snapshot_version: int, event_id: UUID, state: str, key: str
) -> str:
    message = f"{category}\n{stream_id}\n{version}\n{snapshot_version}\n{event_id}\n{state}"
    return salted_hmac(SNAPSHOT_SALT, message, secret=key, algorithm="sha256").hexdigest()


def seal_snapshot(
    category: str, stream_id: UUID, version: int, snapshot_version: int, event_id: UUID, state: str
) -> str:
    """A snapshot as stored: the state (JSON text) at `version`, whose last event is `event_id`, sealed."""
    mac = _mac(category, stream_id, version, snapshot_version, event_id, state, settings.SECRET_KEY)
    return orjson.dumps({"state": state, "event_id": str(event_id), "mac": mac}).decode()


def unseal_snapshot(
    category: str, stream_id: UUID, version: int, snapshot_version: int, stored: str
) -> tuple[UUID, str] | None:
    """(last event id, state as JSON text) if the stored snapshot's MAC holds, else None."""
    try:
        sealed = orjson.loads(stored)
        state, event_id, mac = sealed["state"], UUID(sealed["event_id"]), sealed["mac"]
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return None
    if not isinstance(state, str) or not isinstance(mac, str):
        return None
    for key in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        if constant_time_compare(mac, _mac(category, stream_id, version, snapshot_version, event_id, state, key)):
            return event_id, state
    return None


class StateCache:
    """The latest folded state of recently used aggregates, in this process (an LRU).

    A state at a version is a fact (events never change), so a cached one is never wrong, only
    possibly old: a load reads just the events after it, and the append's expected-version check
    still catches every race. Meant for command handling, where the same aggregates come back
    again and again; reads for people (which may show personal data that has since been
    forgotten) load without it. States must be immutable (frozen pydantic models): threads share them.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, UUID], tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, category: str, stream_id: UUID) -> tuple[int, Any] | None:
        with self._lock:
            found = self._items.get((category, stream_id))
            if found is not None:
                self._items.move_to_end((category, stream_id))
            return found

    def put(self, category: str, stream_id: UUID, version: int, state: Any) -> None:
        with self._lock:
            known = self._items.get((category, stream_id))
            if known is None or known[0] < version:
                self._items[(category, stream_id)] = (version, state)
                self._items.move_to_end((category, stream_id))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every state (a subject was forgotten somewhere: no state here may keep its data)."""
        with self._lock:
            self._items.clear()


class Repository(Generic[A]):
    """Loads and saves aggregates of one type, on an `EventStore` (the default) or an `InMemoryEventStore`.

    `snapshot_every` defaults to the `EVENTSTORE["SNAPSHOT_EVERY"]` setting (0: no snapshots)."""

    def __init__(
        self,
        aggregate_type: type[A],
        store: Store | None = None,
        snapshot_every: int | None = None,
        cache: StateCache | None = None,
    ) -> None:
        self.type = aggregate_type
        self.store: Store = store or EventStore()
        self.cache = cache
        every = snapshot_every if snapshot_every is not None else settings.EVENTSTORE["SNAPSHOT_EVERY"]
        self.snapshot_every = max(0, every)

    def load(self, stream_id: UUID, *, version: int | None = None, at: datetime | None = None) -> A:
        """The aggregate folded to its latest version, to `version`, or as it was at time `at`."""
        kind = self.type
        state, current = kind.initial_state(), 0
        latest = version is None and at is None
        cached = self.cache.get(kind.category, stream_id) if self.cache is not None and latest else None
        events: list[RecordedEvent] | None = None
        if cached is not None:
            current, state = cached
        elif at is None:
            found = self._from_snapshot(stream_id, version)
            if found is not None:
                current, state, events = found
        if events is None:
            events = self.store.read_stream(stream_id, from_version=current + 1, to_version=version, recorded_until=at)
        state, current = self.fold(state, current, events)
        if current == 0:
            raise AggregateNotFound(f"no {kind.category} {stream_id}")
        if self.cache is not None and latest:
            self._remember(stream_id, current, state)
        return kind(stream_id, state, current)

    def _remember(self, stream_id: UUID, version: int, state: Any) -> None:
        """Cache a state once what it was folded from is committed (at once outside a transaction):
        a rolled-back append must never be remembered."""
        cache, category = self.cache, self.type.category
        assert cache is not None
        self.store.on_commit(lambda: cache.put(category, stream_id, version, state))

    def fold(self, state: Any, version: int, events: list[RecordedEvent]) -> tuple[Any, int]:
        """Apply recorded events to a state: the one fold behind load, history and the time machine."""
        evolve, decode = self.type.evolve, self.store.registry.decode
        for event in events:
            state = evolve(state, decode(event.type, event.data))
            version = event.version
        return state, version

    def save(
        self,
        aggregate: A,
        *,
        expected_version: ExpectedVersion | None = None,
        metadata: Mapping[str, Any] | None = None,
        event_ids: list[UUID] | None = None,
    ) -> AppendResult | None:
        """Append the aggregate's pending events, checked against the version it was loaded at."""
        if not aggregate.pending_events:
            return None
        if expected_version is None:
            expected_version = aggregate.version if aggregate.version else NO_STREAM
        meta = dict(metadata or {})
        if event_ids is not None:
            batch = [NewEvent(e, meta, i) for e, i in zip(aggregate.pending_events, event_ids, strict=True)]
        else:
            batch = [NewEvent(e, meta) for e in aggregate.pending_events]
        result = self.store.append(aggregate.id, self.type.category, batch, expected_version=expected_version)
        before, aggregate.version = aggregate.version, result.version
        aggregate.pending_events = []
        if self.cache is not None:
            self._remember(aggregate.id, result.version, aggregate.state)
        if (
            self.snapshot_every
            and expected_version != ANY
            and (result.version // self.snapshot_every > before // self.snapshot_every)
        ):
            self.take_snapshot(aggregate, result.event_ids[-1])
        return result

    # -- snapshots ----------------------------------------------------------------
    def _from_snapshot(self, stream_id: UUID, version: int | None) -> tuple[int, Any, list[RecordedEvent]] | None:
        """The stream's snapshot (at or below `version`) as (its version, its state, the events after
        it), if it is sealed, of the code's shape and backed by the log; else None."""
        row = self.store.snapshot(stream_id)
        if row is None:
            return None
        at, snapshot_version, stored = row
        category = self.type.category
        if snapshot_version != getattr(self.type, "snapshot_version", 1):
            self._drop_snapshot(stream_id, "of another shape", logging.DEBUG)
            return None
        unsealed = unseal_snapshot(category, stream_id, at, snapshot_version, stored)
        if unsealed is None:
            self._drop_snapshot(stream_id, "whose seal does not hold (forged, or sealed with another SECRET_KEY)")
            return None
        if version is not None and at > version:
            return None  # too new for this load (the time machine): fine as it is
        last, state = unsealed
        events = self.store.read_stream(stream_id, from_version=at, to_version=version)
        if not events or events[0].version != at or events[0].event_id != last:
            self._drop_snapshot(stream_id, "that does not fit the log (its last event is not the log's)")
            return None
        return at, self.type_state().model_validate(orjson.loads(state)), events[1:]

    def _drop_snapshot(self, stream_id: UUID, why: str, level: int = logging.WARNING) -> None:
        """Ignore the stream's snapshot and drop it once this load's transaction commits."""
        log.log(level, "snapshot of %s %s %s: ignored and dropped", self.type.category, stream_id, why)
        store = self.store
        store.on_commit(lambda: store.drop_snapshot(stream_id))

    def type_state(self) -> type[BaseModel]:
        return type(self.type.initial_state())

    def take_snapshot(self, aggregate: A, event_id: UUID) -> None:
        """Keep the aggregate's state at its version, `event_id` being the event at that version."""
        state = orjson.dumps(aggregate.state.model_dump(mode="json")).decode()
        category, snapshot_version = self.type.category, getattr(self.type, "snapshot_version", 1)
        sealed = seal_snapshot(category, aggregate.id, aggregate.version, snapshot_version, event_id, state)
        self.store.save_snapshot(aggregate.id, category, aggregate.version, snapshot_version, sealed)
