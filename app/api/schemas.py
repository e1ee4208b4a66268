"""Response shapes, for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from ninja import Schema


class ErrorOut(Schema):
    error: str
    detail: str
    fields: dict[str, list[str]] | None = None


ERRORS: dict[int, Any] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    415: ErrorOut,
    422: ErrorOut,
    503: ErrorOut,
}
READ_ERRORS: dict[int, Any] = {k: v for k, v in ERRORS.items() if k in (401, 403, 404, 422)}


class AccountCommandOut(Schema):
    account_id: UUID
    version: int
    position: int


class TransferCommandOut(Schema):
    transfer_id: UUID
    position: int


class EventOut(Schema):
    event_id: UUID
    position: int
    stream_id: UUID
    category: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


class EventPage(Schema):
    items: list[EventOut]


class LogPage(Schema):
    items: list[EventOut]
    next: str


class StateOut(Schema):
    version: int
    state: dict[str, Any]


class EventTypeOut(Schema):
    name: str
    schema_versions: list[int]
    event_schema: dict[str, Any]
    count: int
    count_exact: bool  # false on a big log: the planner's estimate, not a scan of every event
    personal_data: list[str]
