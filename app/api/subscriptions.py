"""Named persistent subscriptions (consumer groups): create and delete (operators), read their
checkpoints, lag and consumers, fetch events and acknowledge them (viewers and above). Parse,
call app/integration/subscriptions.py, answer."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Body, Query, Router, Schema
from ninja.responses import Status
from pydantic import AfterValidator, Field, StringConstraints

from app.api.commands import operator_only
from app.api.errors import ApiError
from app.api.queries import event_json
from app.api.schemas import ERRORS, READ_ERRORS, EventOut, Number, QueryText
from app.core.threads import in_thread
from app.integration import subscriptions as subs
from app.integration.live import watcher
from eventstore.records import BUCKETS, Checkpoint, bucket_of
from eventstore.registry import registry

router = Router(tags=["subscriptions"])
MAX_WAIT_S = 20  # a fetch's long poll, well inside a lease


def _name(value: str) -> str:
    if not subs.is_name(value):
        raise ValueError("lower-case letters, digits, '.', '_' and '-', up to 100, starting with a letter or digit")
    return value


def _types(values: list[str]) -> list[str]:
    unknown = [t for t in values if t not in registry]
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown[:5])}")
    return values


Name = Annotated[str, AfterValidator(_name)]
TypeName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SubscriptionIn(Schema):
    name: Name
    category: QueryText | None = None
    types: Annotated[list[TypeName], Field(max_length=50), AfterValidator(_types)] = []
    # where the checkpoints start: the log's first event, or its head (only what is appended from now on)
    start: Literal["beginning", "head"] = "beginning"


class ConsumerOut(Schema):
    consumer: str
    last_fetch_at: datetime
    buckets: list[int]


class BucketOut(Schema):
    bucket: int
    checkpoint: str
    position: int
    lag: int
    consumer: str | None


class SubscriptionOut(Schema):
    name: str
    category: str | None
    types: list[str]
    created_at: datetime
    checkpoint: str  # the lowest over the buckets
    lag: int  # events of the log after the checkpoints, before the filters
    consumers: list[ConsumerOut]
    buckets: list[BucketOut]


class FetchQuery(Schema):
    consumer: Name
    limit: Number = Field(100, ge=1, le=subs.MAX_FETCH)
    wait: Number = Field(0, ge=0, le=MAX_WAIT_S)


class FetchedEvent(EventOut):
    bucket: int
    cursor: str


class FetchOut(Schema):
    items: list[FetchedEvent]
    ack: dict[str, str]  # bucket -> the cursor to acknowledge once every item is handled
    buckets: list[int]
    lease_expires_at: datetime


class AckIn(Schema):
    consumer: Name
    cursor: QueryText | None = None
    positions: dict[str, QueryText] | None = Field(None, max_length=BUCKETS)


class AckOut(Schema):
    checkpoints: dict[str, str]


def _status(name: str) -> dict[str, Any]:
    try:
        return subs.subscription_status(subs.subscription_get(name))
    except subs.UnknownSubscription:
        raise ApiError(404, "not_found", f"no subscription {name!r}") from None


@router.post("/subscriptions", response={201: SubscriptionOut, **ERRORS}, auth=operator_only, summary="Subscribe")
async def subscription_create(request: HttpRequest, payload: SubscriptionIn = Body(...)) -> Status:  # noqa: B008
    user = request.auth.user  # type: ignore[attr-defined]  # set by ninja once the token is accepted

    def create() -> dict[str, Any]:
        try:
            sub = subs.subscription_create(
                name=payload.name,
                category=payload.category or "",
                types=payload.types,
                start=payload.start,
                user=user,
            )
        except subs.SubscriptionExists:
            raise ApiError(409, "subscription_exists", f"a subscription {payload.name!r} exists already") from None
        return subs.subscription_status(sub)

    return Status(201, await in_thread(create)())


@router.get("/subscriptions", response={200: list[SubscriptionOut], **READ_ERRORS}, summary="Every subscription")
async def subscription_list(request: HttpRequest) -> list[dict[str, Any]]:
    return await in_thread(subs.subscription_list)()


@router.get("/subscriptions/{name}", response={200: SubscriptionOut, **READ_ERRORS}, summary="A subscription")
async def subscription_get(request: HttpRequest, name: str) -> dict[str, Any]:
    return await in_thread(_status)(name)


@router.delete("/subscriptions/{name}", response={204: None, **ERRORS}, auth=operator_only, summary="Unsubscribe")
async def subscription_delete(request: HttpRequest, name: str) -> Status:
    if not await in_thread(subs.subscription_delete)(name):
        raise ApiError(404, "not_found", f"no subscription {name!r}")
    return Status(204, None)


def _fetch(name: str, consumer: str, limit: int) -> subs.Fetched:
    try:
        return subs.fetch(name, consumer, limit=limit)
    except subs.UnknownSubscription:
        raise ApiError(404, "not_found", f"no subscription {name!r}") from None


@router.get(
    "/subscriptions/{name}/events",
    response={200: FetchOut, **READ_ERRORS},
    summary="Fetch events of the buckets this consumer holds",
)
async def subscription_fetch(request: HttpRequest, name: str, q: Query[FetchQuery]) -> dict[str, Any]:
    """Events after each held bucket's checkpoint, in read order; with `wait`, waits up to that many
    seconds for some when there are none yet (on the process's head watcher, not polling)."""
    deadline = time.monotonic() + min(q.wait, settings.SUBSCRIPTION_LEASE_S / 2)  # the leases outlive the wait
    head = watcher()
    while True:
        generation = head.generation
        found = await in_thread(_fetch)(name, q.consumer, q.limit)
        remaining = deadline - time.monotonic()
        if found.events or remaining <= 0 or not await head.wait(generation, remaining):
            break
    return {
        "items": [
            {**event_json(e), "bucket": bucket_of(e.stream_id), "cursor": e.checkpoint.encode()} for e in found.events
        ],
        "ack": {str(b): c.encode() for b, c in found.ack.items()},
        "buckets": found.buckets,
        "lease_expires_at": found.lease_expires_at,
    }


def _positions(payload: AckIn) -> dict[int, Checkpoint]:
    if (payload.cursor is None) == (payload.positions is None):
        raise ApiError(422, "validation_error", "give cursor or positions", fields={"cursor": ["cursor or positions"]})
    try:
        if payload.cursor is not None:
            cursor = Checkpoint.decode(payload.cursor)
            return {subs.bucket_of_cursor(cursor): cursor}
        assert payload.positions is not None
        out: dict[int, Checkpoint] = {}
        for key, value in payload.positions.items():
            if not key.isascii() or not key.isdigit() or int(key) >= BUCKETS:
                raise ValueError(f"not a bucket: {key[:20]!r}")
            out[int(key)] = Checkpoint.decode(value)
        return out
    except ValueError as exc:
        field = "cursor" if payload.cursor is not None else "positions"
        raise ApiError(422, "validation_error", str(exc), fields={field: [str(exc)]}) from None


@router.post(
    "/subscriptions/{name}/ack",
    response={200: AckOut, **ERRORS},
    summary="Acknowledge events: move the checkpoints of buckets this consumer holds",
)
async def subscription_ack(request: HttpRequest, name: str, payload: AckIn = Body(...)) -> dict[str, Any]:  # noqa: B008
    def ack() -> dict[int, Checkpoint]:
        positions = _positions(payload)
        try:
            return subs.ack(name, payload.consumer, positions)
        except subs.UnknownSubscription:
            raise ApiError(404, "not_found", f"no subscription {name!r}") from None
        except subs.LeaseLost as exc:
            raise ApiError(409, "lease_lost", str(exc)) from None
        except subs.NotDelivered as exc:
            raise ApiError(422, "validation_error", str(exc), fields={"positions": [str(exc)]}) from None

    moved = await in_thread(ack)()
    return {"checkpoints": {str(b): c.encode() for b, c in sorted(moved.items())}}
