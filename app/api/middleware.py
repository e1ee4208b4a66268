"""Every API request body checked before anything parses it: its size (413) on the bytes actually
received, and its type (415) whatever its framing.

Under ASGI, Django's handler reads the whole body into a spooled file before any middleware runs,
and a chunked body declares no length: so `BodyLimit`, an ASGI middleware around the API's
handler (app/asgi.py), reads the body itself (of any method: Django reads a GET's body too) and
stops at `API_MAX_BODY_BYTES` + 1 bytes, then hands Django what it read. `ApiBodyMiddleware`
makes the same checks inside Django, for what reaches the API without that wrapper (the test
client, a WSGI server: both give a declared length).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from eventstore.inputs import parse_int

BODY_METHODS = {"POST", "PUT", "PATCH"}
JSON = "application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def too_large() -> tuple[int, dict[str, str]]:
    detail = f"the body may have at most {settings.API_MAX_BODY_BYTES} bytes"
    return 413, {"error": "payload_too_large", "detail": detail}


def not_json() -> tuple[int, dict[str, str]]:
    return 415, {"error": "unsupported_media_type", "detail": "send the body as application/json"}


def is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == JSON


def declared_length(raw: str | None) -> int | None:
    """Content-Length, if it is a number (the server has refused a malformed one already)."""
    try:
        return parse_int(raw or "", maximum=2**63 - 1)
    except ValueError:
        return None


class BodyLimit:
    """ASGI middleware: the API's request bodies, bounded as they arrive (see the module's doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # every method: Django would read any body whole
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        json = is_json(headers.get("content-type", ""))
        declared = declared_length(headers.get("content-length"))
        limit = settings.API_MAX_BODY_BYTES
        if declared is not None and declared > limit:
            return await answer(send, *too_large())
        if not json and (declared or "transfer-encoding" in headers):  # a body is coming, and not JSON
            return await answer(send, *not_json())
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left: nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:  # stop reading: whatever else comes is never looked at
                return await answer(send, *too_large())
            if not message.get("more_body", False):
                break
        if body and not json:
            return await answer(send, *not_json())
        return await self.app(scope, replay(bytes(body), receive), send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives the body read so far in one message, then the client's own."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def next_message() -> Message:
        return pending.pop() if pending else await receive()

    return next_message


async def answer(send: Send, status: int, payload: dict[str, str]) -> None:
    """An error in the contract's shape, straight from ASGI; the connection closes after it, since
    the rest of the body, if any, is not read."""
    content = orjson.dumps(payload)
    headers = [
        (b"content-type", JSON.encode()),
        (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _reject(request: HttpRequest) -> HttpResponse | None:
    if not request.path.startswith("/api/") or request.method not in BODY_METHODS:
        return None
    length = declared_length(request.META.get("CONTENT_LENGTH")) or 0
    if length > settings.API_MAX_BODY_BYTES:
        return JsonResponse(too_large()[1], status=413)
    if length and not is_json(request.META.get("CONTENT_TYPE", "")):
        return JsonResponse(not_json()[1], status=415)
    return None


class RefusingMiddleware:
    """Django middleware, sync or async as the chain is, that may answer a request itself:
    `refuse(request)` gives the answer, or None to pass the request on."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        raise NotImplementedError

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return self.refuse(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self.refuse(request) or await self.get_response(request)


class ApiBodyMiddleware(RefusingMiddleware):
    """Django middleware: the same checks for requests that did not come through `BodyLimit`."""

    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        return _reject(request)
