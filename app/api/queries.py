"""Read endpoints over the log itself (viewers): streams, the global log, aggregate state, catalog."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from app.api.errors import ApiError
from app.api.schemas import (
    READ_ERRORS,
    STREAM_READ_ERRORS,
    EventPage,
    EventTypeOut,
    LogPage,
    Number,
    QueryText,
    StateOut,
    Version,
)
from app.core.threads import in_thread
from eventstore import timeline
from eventstore.aggregate import aggregate_types
from eventstore.browse import LogBrowser
from eventstore.errors import AggregateNotFound
from eventstore.records import START, Checkpoint, RecordedEvent
from eventstore.registry import registry
from eventstore.repository import Repository
from eventstore.store import EventStore

router = Router(tags=["log"])
MAX_PAGE = 1000


def event_json(e: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "position": e.position,
        "stream_id": e.stream_id,
        "category": e.category,
        "version": e.version,
        "type": e.type,
        "schema_version": e.schema_version,
        "data": e.data,
        "metadata": e.metadata,
        "recorded_at": e.recorded_at,
    }


def refuse_tombstoned(store: EventStore, stream_id: UUID) -> None:
    """410 `stream_gone` for a tombstoned stream: its events are history that no one may extend."""
    tombstone = store.tombstone_of(stream_id)
    if tombstone is not None:
        when = tombstone.tombstoned_at.isoformat()
        raise ApiError(410, "stream_gone", f"stream {stream_id} was tombstoned", tombstoned_at=when)


class StreamQuery(Schema):
    from_version: Version = 1
    limit: Number = Field(100, ge=1, le=MAX_PAGE)


@router.get("/streams/{stream_id}/events", response={200: EventPage, **STREAM_READ_ERRORS}, summary="A stream's events")
async def stream_events(request: HttpRequest, stream_id: UUID, q: Query[StreamQuery]) -> dict[str, Any]:
    def read() -> list[RecordedEvent]:
        store = EventStore()
        refuse_tombstoned(store, stream_id)
        return store.read_stream(stream_id, from_version=q.from_version, limit=q.limit)

    events = await in_thread(read)()
    if not events and q.from_version == 1:
        raise ApiError(404, "not_found", f"no stream {stream_id}")
    return {"items": [event_json(e) for e in events]}


class LogQuery(Schema):
    after: QueryText | None = None
    limit: Number = Field(100, ge=1, le=MAX_PAGE)
    type: QueryText | None = None
    category: QueryText | None = None
    correlation_id: QueryText | None = None


@router.get("/events", response={200: LogPage, **READ_ERRORS}, summary="The global log, in read order")
async def log(request: HttpRequest, q: Query[LogQuery]) -> dict[str, Any]:
    try:
        after = Checkpoint.decode(q.after) if q.after else START
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc), fields={"after": ["not a cursor from this API"]}) from None
    page = await in_thread(timeline.forward)(
        after=after,
        limit=q.limit,
        types=[q.type] if q.type else (),
        categories=[q.category] if q.category else (),
        correlation_id=q.correlation_id,
    )
    return {"items": [event_json(e) for e in page.events], "next": page.checkpoint.encode(), "partial": page.partial}


class StateQuery(Schema):
    version: Version | None = None
    at: datetime | None = None


@router.get(
    "/aggregates/{category}/{stream_id}/state",
    response={200: StateOut, **STREAM_READ_ERRORS},
    summary="An aggregate's state, now, at a version or at a time",
)
async def aggregate_state(request: HttpRequest, category: str, stream_id: UUID, q: Query[StateQuery]) -> dict:
    kind = aggregate_types.get(category)
    if kind is None:
        raise ApiError(404, "not_found", f"no aggregate category {category!r}")
    if q.version is not None and q.at is not None:
        raise ApiError(422, "validation_error", "give version or at, not both", fields={"at": ["with version"]})
    if q.at is not None and q.at.tzinfo is None:
        raise ApiError(422, "validation_error", "at needs a time zone", fields={"at": ["naive time"]})

    def load() -> dict[str, Any]:
        refuse_tombstoned(EventStore(), stream_id)
        try:
            aggregate = Repository(kind).load(stream_id, version=q.version, at=q.at)
        except AggregateNotFound:
            raise ApiError(404, "not_found", f"no {category} {stream_id} at that point") from None
        return {"version": aggregate.version, "state": aggregate.state.model_dump(mode="json")}

    return await in_thread(load)()


@router.get("/event-types", response={200: list[EventTypeOut], **READ_ERRORS}, summary="The event catalog")
async def event_types(request: HttpRequest) -> list[dict[str, Any]]:
    found = await in_thread(LogBrowser().counts)("event_type")  # estimated on a big log, never a full scan
    counted = found.by_key
    return [
        {
            "name": t.name,
            "schema_versions": list(range(1, t.version + 1)),
            "event_schema": t.json_schema(),
            "count": counted.get(t.name, 0),
            "count_exact": found.exact,
            "personal_data": list(t.personal_data),
        }
        for t in registry.types()
    ]
