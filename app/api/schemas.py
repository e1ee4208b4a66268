"""Request parameter types, bounded at the edge, and response shapes, for the OpenAPI document.

Every number a request carries (a query parameter, a body field) is a `Number`: ASCII digits
(in a JSON body, an integer or a string of digits: never a float, a boolean, "²", "١٢" or
"1_000"), within the bound of the column it ends up in. Every text a query carries is `QueryText`:
bounded, and storable by PostgreSQL (no NUL, no unpaired surrogate). Pydantic then names the
field in the contract's `validation_error`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from ninja import Schema
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from eventstore.inputs import MAX_BIGINT, MAX_INT, parse_int, storable

QUERY_TEXT_MAX = 200


def ascii_number(value: Any) -> Any:
    """A number as sent: a JSON integer, or a string of ASCII digits; anything else is refused."""
    if isinstance(value, bool | float):
        raise ValueError("must be an integer")
    if isinstance(value, str):
        return parse_int(value, maximum=10**20)  # the field's own bounds follow
    return value


Number = Annotated[int, BeforeValidator(ascii_number)]
Position = Annotated[Number, Field(ge=1, le=MAX_BIGINT, description="a global position")]
Version = Annotated[Number, Field(ge=1, le=MAX_INT, description="a stream version")]
QueryText = Annotated[str, StringConstraints(max_length=QUERY_TEXT_MAX), AfterValidator(storable)]


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
    410: ErrorOut,
    413: ErrorOut,
    415: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
    503: ErrorOut,
}
READ_ERRORS: dict[int, Any] = {k: v for k, v in ERRORS.items() if k in (401, 403, 404, 422, 429)}
# reads of one stream also answer 410 for a tombstoned one
STREAM_READ_ERRORS: dict[int, Any] = {**READ_ERRORS, 410: ErrorOut}


class AccountCommandOut(Schema):
    account_id: UUID
    version: int
    position: int


class ForgetOut(AccountCommandOut):
    already_forgotten: bool  # the owner had been forgotten before: nothing was appended this time


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
    partial: bool  # a filtered page stopped at the bound of events it looks at: follow `next` at once


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
