"""Value types that cross the store's boundary."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple
from uuid import UUID

from pydantic import BaseModel

from eventstore.inputs import MAX_BIGINT, MAX_XID8, parse_int

BUCKETS = 64  # fixed: a stream's bucket never changes


def bucket_of(stream_id: UUID) -> int:
    """The bucket of a stream, from the low bits of its UUID (random in uuid4)."""
    return stream_id.int % BUCKETS


ANY: Literal["any"] = "any"
NO_STREAM: Literal["no_stream"] = "no_stream"
ExpectedVersion = int | Literal["any", "no_stream"]


class NewEvent(NamedTuple):
    """An event to append: a registered payload, its metadata and, optionally, its id.

    Without an id the store gives the event a random one. With ids (derived from a
    command id, say) a retried append is harmless: the same ids at the same versions
    return the first append's positions instead of appending again.
    """

    payload: BaseModel
    metadata: Mapping[str, Any] | None = None
    event_id: UUID | None = None


class Checkpoint(NamedTuple):
    """A place in the log's read order: (transaction id, global position)."""

    tx_id: int
    position: int

    def encode(self) -> str:
        """An opaque, URL-safe cursor."""
        raw = f"{self.tx_id}.{self.position}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Checkpoint:
        try:
            raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4)).decode("ascii")
            tx_id, position = raw.split(".")
            return cls(parse_int(tx_id, maximum=MAX_XID8), parse_int(position, maximum=MAX_BIGINT))
        except (ValueError, UnicodeError):  # ASCII digits within xid8 and bigint only
            raise ValueError("not a valid cursor") from None


START = Checkpoint(0, 0)


class RecordedEvent(NamedTuple):
    """An event as stored, with its data upcast to the current schema version.

    An upcast event also keeps what the log holds: `stored_version` and `raw_data` are the row's
    schema version and data before the upcasters ran. Both are None when nothing was upcast (the
    data is the row's), so that a read with no history to upcast copies nothing; `stored` gives
    the pair either way.
    """

    position: int
    tx_id: int
    stream_id: UUID
    category: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    stored_version: int | None = None  # the row's schema version, when the data was upcast
    raw_data: dict[str, Any] | None = None  # the row's data, when it was upcast

    @property
    def upcast(self) -> bool:
        """Whether `data` was brought up from an older schema version than the row's."""
        return self.stored_version is not None

    @property
    def stored(self) -> tuple[int, dict[str, Any]]:
        """The schema version and data as the log holds them."""
        if self.stored_version is None or self.raw_data is None:
            return self.schema_version, self.data
        return self.stored_version, self.raw_data

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx_id, self.position)

    @property
    def bucket(self) -> int:
        return bucket_of(self.stream_id)


class AppendResult(NamedTuple):
    stream_id: UUID
    versions: list[int]
    positions: list[int]
    event_ids: list[UUID]

    @property
    def version(self) -> int:
        return self.versions[-1]

    @property
    def position(self) -> int:
        return self.positions[-1]


class ReadResult(NamedTuple):
    events: list[RecordedEvent]
    checkpoint: Checkpoint  # where to resume: the last event's, or `after` when nothing was read


class Tombstone(NamedTuple):
    """A stream closed for good: no append is accepted after `tombstoned_at` (see `Store.tombstone`)."""

    stream_id: UUID
    tombstoned_at: datetime
    reason: str
