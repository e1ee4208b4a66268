"""The contract `EventStore` and `InMemoryEventStore` both hold, as a type.

What sits on top of the log and runs on either store (the `Repository`, the ledger's command
path) takes a `Store`: the methods below, whose behaviour the contract suite
(tests/integration/eventstore/contract/) checks against both. The PostgreSQL store's own extras
(`cursor`, `read_cursor`, `fetch_events`) are not part of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from pydantic import BaseModel

from eventstore.records import (
    AppendResult,
    Checkpoint,
    ExpectedVersion,
    NewEvent,
    ReadResult,
    RecordedEvent,
    Tombstone,
)
from eventstore.registry import EventRegistry
from eventstore.retention import Policy

if TYPE_CHECKING:
    from eventstore.personal_data import Keyring


class Store(Protocol):
    """An event store: `EventStore` (PostgreSQL) or `InMemoryEventStore`."""

    using: str  # the database alias the append hooks are told
    registry: EventRegistry

    @property
    def subject_keys(self) -> Keyring: ...

    @property
    def retention(self) -> Policy: ...

    def on_commit(self, fn: Callable[[], None]) -> None: ...

    def append(
        self,
        stream_id: UUID,
        category: str,
        events: Sequence[NewEvent | BaseModel],
        *,
        expected_version: ExpectedVersion = ...,
    ) -> AppendResult: ...

    def stream_version(self, stream_id: UUID) -> int: ...

    def read_stream(
        self,
        stream_id: UUID,
        *,
        from_version: int | None = None,
        limit: int | None = None,
        backwards: bool = False,
        to_version: int | None = None,
        recorded_until: datetime | None = None,
    ) -> list[RecordedEvent]: ...

    def read_all(
        self,
        after: Checkpoint = ...,
        *,
        limit: int = 1000,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        bucket: int | None = None,
        correlation_id: str | None = None,
        include_archived: bool = False,
    ) -> ReadResult: ...

    def head(self) -> Checkpoint: ...

    def tombstone(self, stream_id: UUID, *, reason: str = "") -> Tombstone: ...

    def tombstone_of(self, stream_id: UUID) -> Tombstone | None: ...

    def tombstones(self, after: UUID | None = None, *, limit: int = 1000) -> list[Tombstone]: ...

    def archive(self, stream_ids: Sequence[UUID]) -> int: ...

    def snapshot(self, stream_id: UUID) -> tuple[int, int, str] | None: ...

    def save_snapshot(
        self, stream_id: UUID, category: str, version: int, snapshot_version: int, state: str
    ) -> None: ...

    def drop_snapshot(self, stream_id: UUID) -> None: ...


if TYPE_CHECKING:  # both stores hold the contract: mypy checks this, nothing runs it
    from eventstore.memory import InMemoryEventStore
    from eventstore.store import EventStore

    def _both_hold_it(postgres: EventStore, memory: InMemoryEventStore) -> tuple[Store, Store]:
        return postgres, memory
