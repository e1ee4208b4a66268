"""`GET /api/events/live`: the log as server-sent events, for outside readers (viewers and above).

Each event is one SSE message: `id:` the cursor after it (the cursor `GET /api/events` takes as
`after`), `event:` its type, `data:` the event as the contract defines it, on one line. A client
that reconnects with `Last-Event-ID` (what EventSource sends by itself) or `?after=` goes on right
after that event: the reads are `eventstore.timeline.forward`'s, below the read horizon, so no
event is skipped or repeated. Filters (`category`, `type`) are applied on the server, on a walk
bounded per read; when a walk passes only events that do not match, an `id:`-only message moves
the client's cursor past them, so a resume need not walk them again.

Async all the way: the view returns at once, the stream's reads run in the thread pool (a
database connection is held only for each read), and a reader that has caught up waits on the
process's head watcher (`app/integration/live.py`), with a `: keep-alive` comment every
`LIVE_HEARTBEAT_S`. A client that leaves ends the generator (Django cancels it). Each process
serves at most `LIVE_MAX_STREAMS` streams at once; beyond that, 503 with Retry-After.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router, Schema
from ninja.responses import NinjaJSONEncoder

from app.api.errors import ApiError
from app.api.queries import event_json
from app.api.schemas import ERRORS, QueryText
from app.core.threads import in_thread
from app.integration.live import watcher
from eventstore import timeline
from eventstore.records import START, Checkpoint, RecordedEvent
from eventstore.registry import registry

router = Router(tags=["subscriptions"])
log = logging.getLogger(__name__)
PAGE = 500  # events per read of the log
RETRY_MS = 2000  # the `retry:` hint: how long a disconnected EventSource waits before reconnecting
BUSY_RETRY_AFTER_S = 5


class Slots:
    """The streams this process serves at once, bounded by LIVE_MAX_STREAMS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken = 0

    def take(self) -> bool:
        with self.lock:
            if self.taken >= settings.LIVE_MAX_STREAMS:
                return False
            self.taken += 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.taken -= 1


slots = Slots()


class LiveQuery(Schema):
    after: QueryText | None = None
    category: QueryText | None = None
    type: QueryText | None = None


def resume_point(request: HttpRequest, after: str | None) -> Checkpoint:
    """Where the stream starts: after Last-Event-ID (a reconnection), else `?after=`, else the start."""
    header = request.headers.get("Last-Event-ID")
    given, field = (header, "Last-Event-ID") if header is not None else (after, "after")
    if not given:
        return START
    try:
        return Checkpoint.decode(given.strip())
    except ValueError:
        raise ApiError(
            422, "validation_error", "not a cursor from this API", fields={field: ["invalid cursor"]}
        ) from None


def message(e: RecordedEvent) -> str:
    data = json.dumps(event_json(e), cls=NinjaJSONEncoder, separators=(",", ":"))
    return f"id: {e.checkpoint.encode()}\nevent: {e.type}\ndata: {data}\n\n"


class LiveStream:
    """The response's content: an async iterator that gives its slot back when it ends, and also
    when Django closes a response whose iteration never began (`close`)."""

    def __init__(self, after: Checkpoint, categories: list[str], types: list[str]) -> None:
        self.after, self.categories, self.types = after, categories, types
        self.released = False

    def close(self) -> None:
        if not self.released:
            self.released = True
            slots.give_back()

    def __aiter__(self) -> AsyncIterator[str]:
        return self.events()

    async def events(self) -> AsyncIterator[str]:
        try:
            yield f"retry: {RETRY_MS}\n\n"
            async for chunk in self.follow():
                yield chunk
        except Exception:  # the database went away, say: end the stream; the client resumes from its cursor
            log.warning("a live event stream ended on an error", exc_info=True)
        finally:
            self.close()

    async def follow(self) -> AsyncIterator[str]:
        cursor, beat = self.after, time.monotonic()
        filtered = bool(self.categories or self.types)
        head = watcher()
        while True:
            generation = head.generation  # taken before the read: a move after it wakes the wait below
            page = await in_thread(timeline.forward)(
                after=cursor, limit=PAGE, categories=self.categories, types=self.types
            )
            if page.events:
                yield "".join(message(e) for e in page.events)
                beat = time.monotonic()
            elif filtered and page.checkpoint != cursor:  # walked past events that do not match
                yield f"id: {page.checkpoint.encode()}\n\n"
            cursor = page.checkpoint
            if len(page.events) == PAGE or page.partial:
                continue
            remaining = settings.LIVE_HEARTBEAT_S - (time.monotonic() - beat)
            if not await head.wait(generation, remaining):
                yield ": keep-alive\n\n"
                beat = time.monotonic()


@router.get(
    "/events/live",
    response={200: None, **ERRORS},
    summary="The log live, as server-sent events",
    openapi_extra={
        "responses": {"200": {"description": "OK", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}
    },
    description=(
        "`text/event-stream`: one message per event (`id:` its cursor, `event:` its type, `data:` the event), "
        "`: keep-alive` comments while nothing happens. Resume with `Last-Event-ID` or `?after=`. "
        "503 with Retry-After when the server streams to too many clients already."
    ),
)
async def live_events(request: HttpRequest, q: Query[LiveQuery]) -> Any:
    after = resume_point(request, q.after)
    if q.type and q.type not in registry:
        raise ApiError(422, "validation_error", f"no event type {q.type!r}", fields={"type": ["unknown event type"]})
    if not slots.take():
        raise ApiError(
            503,
            "too_many_streams",
            "this server streams to as many clients as it may; try again later",
            headers={"Retry_After": str(BUSY_RETRY_AFTER_S)},
        )
    stream = LiveStream(after, [q.category] if q.category else [], [q.type] if q.type else [])
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    return response
