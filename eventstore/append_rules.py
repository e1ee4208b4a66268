"""What every store checks and decides the same way on append, so that `EventStore` and
`InMemoryEventStore` hold one contract: the arguments an append accepts, and when a retried
append answers with the first one's result instead of appending again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from pydantic import BaseModel

from eventstore.errors import DuplicateEventError
from eventstore.records import ANY, NO_STREAM, AppendResult, ExpectedVersion, NewEvent


def check_append(
    category: str, events: Sequence[NewEvent | BaseModel], expected_version: ExpectedVersion
) -> tuple[list[NewEvent], int | None]:
    """The events as NewEvents and the expected version as a number (None for ANY, 0 for
    NO_STREAM), or ValueError for arguments no store accepts."""
    if not events:
        raise ValueError("append needs at least one event")
    if not category or not isinstance(category, str):
        raise ValueError(f"category must be a non-empty string, not {category!r}")
    # An exact type check on every append's hot path (NewEvent has no subclasses): mypy does not
    # narrow the other branch to BaseModel from it.
    batch = [e if type(e) is NewEvent else NewEvent(e) for e in events]  # type: ignore[arg-type]
    if expected_version == ANY:
        expected: int | None = None
    elif expected_version == NO_STREAM:
        expected = 0
    elif isinstance(expected_version, int) and not isinstance(expected_version, bool) and expected_version >= 0:
        expected = expected_version
    else:
        raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 0, not {expected_version!r}")
    return batch, expected


def original_append(
    stream_id: UUID,
    ids: list[UUID | None],
    found: Mapping[UUID, tuple[UUID, int, int]],
    expected: ExpectedVersion,
) -> AppendResult | None:
    """An append collided with the log: the earlier append's result if these very events (`ids`,
    all given) are stored at the versions asked for, None if none of them is stored (a plain
    conflict), else DuplicateEventError. `found` maps the ids already stored to their (stream,
    version, position)."""
    if not found:
        return None
    given = [i for i in ids if i is not None]
    placed = [p for p in (found.get(i) for i in given) if p is not None and p[0] == stream_id]
    if len(placed) == len(ids):  # every event has an id, stored on this stream
        versions = [p[1] for p in placed]
        first = versions[0]
        if expected == ANY:
            expected_first = first
        elif expected == NO_STREAM:
            expected_first = 1
        else:
            expected_first = int(expected) + 1
        if versions == list(range(first, first + len(ids))) and first == expected_first:
            return AppendResult(stream_id, versions, [p[2] for p in placed], given)
    raise DuplicateEventError(
        "event ids already stored elsewhere in the log: " + ", ".join(str(i) for i in ids if i in found)
    )
