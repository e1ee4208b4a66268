"""One small hierarchy for everything the store refuses."""

from __future__ import annotations

from typing import Any
from uuid import UUID


class EventStoreError(Exception):
    """Base class of the store's errors."""


class ConcurrencyError(EventStoreError):
    """The stream was not at the expected version; nothing was written."""

    def __init__(self, stream_id: UUID, expected: Any, actual: int) -> None:
        self.stream_id, self.expected, self.actual = stream_id, expected, actual
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")


class StreamTombstoned(EventStoreError):
    """The stream was tombstoned: it accepts no more events, ever; nothing was written."""

    def __init__(self, stream_id: UUID) -> None:
        self.stream_id = stream_id
        super().__init__(f"stream {stream_id} is tombstoned: it accepts no more events")


class DuplicateEventError(EventStoreError):
    """An event id is already in the log at another place; nothing was written."""


class UnknownEventType(EventStoreError):
    """The event type is not registered."""


class InvalidEventData(EventStoreError):
    """A payload does not match its event type's schema."""

    def __init__(self, event_type: str, errors: list[dict[str, Any]]) -> None:
        self.event_type, self.errors = event_type, errors
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors)
        super().__init__(f"invalid {event_type}: {detail}")


class UpcastError(EventStoreError):
    """An old schema version has no path to the current one."""


class SubjectForgotten(EventStoreError):
    """The data subject's key was destroyed: no new personal data can be stored for it."""


class AggregateNotFound(EventStoreError):
    """No events exist for this stream (at that point in time)."""
