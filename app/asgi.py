"""ASGI entry point: `uvicorn app.asgi:application`.

The REST API under /api/ is served by its own Django handler with a short, async-native
middleware chain: Django's session, CSRF, auth and message middleware are sync-only and would
each move every request to Django's one shared sync thread and back, twice. API requests carry
bearer tokens, not cookies, so they need none of them. Everything else gets the full chain.
The API's request bodies are bounded on the bytes received, around Django's handler (`BodyLimit`).
Every HTTP request binds its ids for the log (`logs.RequestContext`) and, when tracing is on, is
the server span of a trace (`telemetry.traced`).
"""

import functools
import os
import time
import weakref
from concurrent.futures import Executor, Future, ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

django_application = get_asgi_application()

from asgiref.sync import ThreadSensitiveContext  # noqa: E402
from django.conf import settings  # noqa: E402  (after Django is set up)
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402

from app.api.middleware import BodyLimit  # noqa: E402

# The API's thread-sensitive calls (Django's request_started and request_finished receivers: the
# API's views are async and send their blocking work to the loop's pool, app/core/threads.py) run
# on the event loop itself while they are only Django's own (OnTheLoop below), else on this one
# long-lived thread. Django's own handler gives each request a ThreadSensitiveContext of its own,
# whose first such call starts a thread for that request alone, joined at its end: a tenth of an
# API command's time in the web process (docs/benchmarks.md, P2). The console keeps Django's
# handler: its sync views must not queue behind each other.
API_SYNC_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-sync")


class OnTheLoop(Executor):
    """Runs each call at once in the calling thread, the event loop's: for the API's thread-sensitive
    calls while they are only Django's own request_started and request_finished receivers (and
    `response.close()`, which sends the latter). Those look at the calling thread's database
    connections and caches, and the API never opens one on the loop's thread (its blocking work
    runs in the loop's pool, app/core/threads.py): so they find nothing to do, and a hop to a
    thread and back, twice per request, cost more than the calls (docs/benchmarks.md, P2)."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a thread's would be
            future.set_exception(exc)
        return future


API_ON_LOOP = OnTheLoop()


@functools.cache
def _known_receivers() -> frozenset:
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    from app.core.connections import before_request

    return frozenset({close_caches, close_old_connections, reset_queries, reset_urlconf, before_request})


def _receivers_touch_nothing() -> bool:
    """Whether the request signals' receivers are only the known ones above (a project that adds one
    of its own, which might use the database, gets the thread)."""
    known = _known_receivers()
    try:
        for signal in (request_started, request_finished):
            for _, ref, is_async in signal.receivers:
                receiver = ref() if isinstance(ref, (weakref.ref, weakref.WeakMethod)) else ref
                if not is_async and receiver not in known:
                    return False
    except (TypeError, ValueError):  # a Django whose receivers list looks otherwise: the thread, as Django does
        return False
    return True


class ApiHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = API_ON_LOOP if _receivers_touch_nothing() else API_SYNC_THREAD
        async with ThreadSensitiveContext(executor=executor):
            await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


# Bodies are bounded as they arrive, before Django's handler would read them whole (app/api/middleware.py).
api_application = BodyLimit(ApiHandler())

from app.console.routing import websocket_application  # noqa: E402
from app.core import logs, metrics, telemetry  # noqa: E402

PROBES = ("/healthz", "/metrics")
LIVE_PATH = "/api/events/live"


async def http_application(scope, receive, send):
    path = scope["path"]
    if path.startswith("/api/"):
        part = "stream" if path == LIVE_PATH else "api"  # a live stream lasts minutes: not an API latency
        return await measured(part, api_application, scope, receive, send)
    part = "probe" if path in PROBES else "static" if path.startswith("/" + settings.STATIC_URL) else "console"
    return await measured(part, django_application, scope, receive, send)


async def measured(part, inner, scope, receive, send):
    """The request's time and status in eventfold_http_request_duration_seconds (app/core/metrics.py)."""
    started, status = time.perf_counter(), None  # None: no answer began (the client left)

    async def sending(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await inner(scope, receive, sending)
    finally:
        metrics.http_request(part, scope.get("method", ""), status, time.perf_counter() - started)


# Every HTTP request's log lines carry its ids (app/core/logs.py); with OTEL_TRACES_EXPORTER set,
# each request is a trace's server span (app/core/telemetry.py).
telemetry.configure("web")
logged_application = logs.RequestContext(telemetry.traced(http_application))


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        return await websocket_application(scope, receive, send)
    if scope["type"] != "http":
        return await django_application(scope, receive, send)
    return await logged_application(scope, receive, send)
