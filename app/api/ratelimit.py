"""A rate limit for the REST API: per bearer token, and per client address for requests without
a valid one; over it, 429 `rate_limited` with `Retry-After`, in the contract's error shape.

Fixed windows of `API_RATE_WINDOW_S` in Redis, shared by every server: each request is one round
trip (a pipeline: INCR and EXPIRE of the window's key, and for a request with a token, GET of its
address's key). A request with a token counts against the token (`API_RATE_LIMIT`), keyed by the
token's SHA-256 digest, so no database lookup is needed to count it. A request without one counts
against its address (`API_ANON_RATE_LIMIT`), and so does each 401: an address that keeps guessing
tokens is held to the anonymous limit, and while it is over it, its requests wait whatever token
they carry. 0 turns a limit off. If Redis cannot be reached the limit lets everything through:
a missing rate limit is better than an API that is down with its cache (the log says so, at
most once a minute).

Why not django-ninja's throttles: they keep a list of every request's time per key in Django's
cache (read, modify, write: not atomic, and O(limit) per request at a generous limit), run only
after authentication (so bad tokens are never counted), and fail with the cache.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import redis
import redis.asyncio
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from app.core.models import digest

log = logging.getLogger(__name__)
TIMEOUT_S = 0.25  # a slow Redis must not slow every request down by more (REDIS_TIMEOUT_S if lower)
WARN_EVERY_S = 60.0
clock = time.time  # wall-clock seconds: windows are aligned to it on every server (tests fix it)


class Decision(NamedTuple):
    """The keys a request counts against, and what to do once Redis has answered."""

    counted: str  # the key this request increments
    limit: int
    watched: str | None  # for a request with a token: its address's key, read only
    window_end: float


def _key(kind: str, who: str, window: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}ratelimit:{kind}:{who}:{window}"


def _token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def decide(request: HttpRequest) -> Decision | None:
    """What this request counts against, or None when no limit applies to it."""
    if not request.path.startswith("/api/"):
        return None
    window_s = max(1, int(settings.API_RATE_WINDOW_S))
    now = clock()
    window = int(now // window_s)
    end = (window + 1) * window_s
    address = _key("addr", _address(request), window)
    token = _token(request)
    if token is None:
        limit = settings.API_ANON_RATE_LIMIT
        return Decision(address, limit, None, end) if limit > 0 else None
    limit = settings.API_RATE_LIMIT
    anon = settings.API_ANON_RATE_LIMIT
    if limit <= 0 and anon <= 0:
        return None
    return Decision(_key("token", digest(token)[:32], window), limit, address if anon > 0 else None, end)


def over(decision: Decision, results: list[Any]) -> bool:
    """Whether the pipeline's answers put this request over a limit."""
    count = int(results[0])
    if decision.limit > 0 and count > decision.limit:
        return True
    return decision.watched is not None and int(results[2] or 0) >= settings.API_ANON_RATE_LIMIT


def refused(decision: Decision) -> HttpResponse:
    wait = max(1, math.ceil(decision.window_end - clock()))
    response = JsonResponse(
        {"error": "rate_limited", "detail": f"too many requests: retry in {wait} s"},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


def _failure_key(request: HttpRequest, response: HttpResponse) -> str | None:
    """A 401 to a request with a token counts against its address."""
    if response.status_code != 401 or _token(request) is None or settings.API_ANON_RATE_LIMIT <= 0:
        return None
    window_s = max(1, int(settings.API_RATE_WINDOW_S))
    return _key("addr", _address(request), int(clock() // window_s))


# -- Redis, sync (Django's test client, WSGI) and async (one client per event loop) --------------------
_sync: dict[str, redis.Redis] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)
_last_warning = 0.0


def _options() -> dict[str, Any]:
    timeout = min(TIMEOUT_S, settings.REDIS_TIMEOUT_S)
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout}


def _sync_client() -> redis.Redis:
    url = settings.REDIS_URL
    if url not in _sync:
        _sync[url] = redis.Redis.from_url(url, **_options())
    return _sync[url]


def _async_client() -> redis.asyncio.Redis:
    url = settings.REDIS_URL
    clients = _async.setdefault(asyncio.get_running_loop(), {})
    if url not in clients:
        clients[url] = redis.asyncio.Redis.from_url(url, **_options())
    return clients[url]


def _window_s() -> int:
    return max(1, int(settings.API_RATE_WINDOW_S)) + 1  # a key outlives its window a little


def _unavailable() -> None:
    global _last_warning
    if time.monotonic() - _last_warning > WARN_EVERY_S:
        _last_warning = time.monotonic()
        log.warning("the API rate limit is off for now: Redis cannot be reached", exc_info=True)


def _count(decision: Decision) -> list[Any] | None:
    try:
        pipe = _sync_client().pipeline(transaction=False)
        pipe.incr(decision.counted)
        pipe.expire(decision.counted, _window_s())
        if decision.watched is not None:
            pipe.get(decision.watched)
        return pipe.execute()
    except (redis.RedisError, OSError):
        _unavailable()
        return None


async def _acount(decision: Decision) -> list[Any] | None:
    try:
        pipe = _async_client().pipeline(transaction=False)
        pipe.incr(decision.counted)
        pipe.expire(decision.counted, _window_s())
        if decision.watched is not None:
            pipe.get(decision.watched)
        return await pipe.execute()
    except (redis.RedisError, OSError):
        _unavailable()
        return None


def _fail(key: str) -> None:
    try:
        pipe = _sync_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, _window_s())
        pipe.execute()
    except (redis.RedisError, OSError):
        _unavailable()


async def _afail(key: str) -> None:
    try:
        pipe = _async_client().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, _window_s())
        await pipe.execute()
    except (redis.RedisError, OSError):
        _unavailable()


def forget_all() -> None:
    """Drop every window of this queue prefix (for tests)."""
    client = _sync_client()
    for key in client.scan_iter(match=f"eventfold:{settings.QUEUE_PREFIX}ratelimit:*", count=1000):
        client.delete(key)


class RateLimitMiddleware:
    """The limit, for /api/ requests only, first in the API's middleware chain."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        decision = decide(request)
        if decision is not None:
            results = _count(decision)
            if results is not None and over(decision, results):
                return refused(decision)
        response: HttpResponse = self.get_response(request)
        failure = _failure_key(request, response)
        if failure is not None:
            _fail(failure)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        decision = decide(request)
        if decision is not None:
            results = await _acount(decision)
            if results is not None and over(decision, results):
                return refused(decision)
        response: HttpResponse = await self.get_response(request)
        failure = _failure_key(request, response)
        if failure is not None:
            await _afail(failure)
        return response
