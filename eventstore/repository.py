"""Loading and saving aggregates (see `eventstore.aggregate` for their shape) on either store.

`Repository` loads an aggregate by folding its stream (starting from the
latest snapshot when one fits), saves its pending events with the expected
version, writes a snapshot every N events, and loads "as of version N" or
"as of time T" by stopping the same fold early. Snapshots are kept by the store
(`snapshot`, `save_snapshot`, `drop_snapshot`): a table beside the log in PostgreSQL,
a dict in `InMemoryEventStore`. `StateCache` keeps recent states between loads in
this process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson
from django.conf import settings
from pydantic import BaseModel

from eventstore.aggregate import AggregateLike
from eventstore.contract import Store
from eventstore.errors import AggregateNotFound
from eventstore.records import ANY, NO_STREAM, AppendResult, ExpectedVersion, NewEvent, RecordedEvent
from eventstore.store import EventStore

A = TypeVar("A", bound=AggregateLike)


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
        if cached is not None:
            current, state = cached
        elif at is None:
            snapshot = self._snapshot(stream_id)
            if snapshot is not None and (version is None or snapshot[0] <= version):
                current, state = snapshot
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
            self.take_snapshot(aggregate)
        return result

    # -- snapshots ----------------------------------------------------------------
    def _snapshot(self, stream_id: UUID) -> tuple[int, Any] | None:
        row = self.store.snapshot(stream_id)
        if row is None:
            return None
        version, snapshot_version, state = row
        if snapshot_version != getattr(self.type, "snapshot_version", 1):
            self.store.drop_snapshot(stream_id)
            return None
        return version, self.type_state().model_validate(orjson.loads(state))

    def type_state(self) -> type[BaseModel]:
        return type(self.type.initial_state())

    def take_snapshot(self, aggregate: A) -> None:
        state = orjson.dumps(aggregate.state.model_dump(mode="json")).decode()
        category, snapshot_version = self.type.category, getattr(self.type, "snapshot_version", 1)
        self.store.save_snapshot(aggregate.id, category, aggregate.version, snapshot_version, state)
