"""503 with `Retry-After`, never a 500, for a console page, the login or /healthz while the database
(or Redis, where the login throttle counts failures) cannot be reached.

The REST API answers these itself, in its error body (503 `unavailable`, app/ledger/commands.py's
table). The rest of the site is Django's full middleware chain and views, which meet the same
errors anywhere: loading the session or the user, a page's query, the login's throttle. Nothing
there is the request's fault and nothing was half done (each write is one transaction), so the
answer is "try again shortly", in a page that needs neither the database nor Redis to render.
"""

from __future__ import annotations

import logging
import time

import psycopg
import redis
from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.deprecation import MiddlewareMixin

log = logging.getLogger(__name__)
WARN_EVERY_S = 60.0
DATABASE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
REDIS = (redis.ConnectionError, redis.TimeoutError)
_last_warning: dict[str, float] = {}  # per part that cannot be reached


def retry_after() -> str:
    return str(settings.BACKPRESSURE_RETRY_AFTER_S)


def response(what: str) -> HttpResponse:
    """The 503 page: it renders without a request context (no session, user or role lookups)."""
    page = render_to_string("unavailable.html", {"what": what, "retry_after": retry_after()})
    answer = HttpResponse(page, status=503)
    answer["Retry-After"] = retry_after()
    return answer


def part_down(exc: BaseException) -> str | None:
    """What cannot be reached, if `exc` (or what caused it) says so; else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DATABASE):
            return "The database"
        if isinstance(seen, REDIS):
            return "Redis"
        seen = seen.__cause__ or seen.__context__
    return None


def _warn(request: HttpRequest, what: str, exception: BaseException) -> None:
    now = time.monotonic()
    if now - _last_warning.get(what, -WARN_EVERY_S) >= WARN_EVERY_S:
        _last_warning[what] = now
        log.warning("%s %s: 503, %s cannot be reached", request.method, request.path, what, exc_info=exception)


class Unavailable(MiddlewareMixin):
    """Turns an unreachable database or Redis met by a view into the 503 page (logged, at most once
    a minute, with its traceback). Sync and async alike (MiddlewareMixin)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        what = part_down(exception)
        if what is None:
            return None
        _warn(request, what, exception)
        return response(what)


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except when the session's save at the end of a request meets a lost database.

    The database backend reports any DatabaseError on that save as UpdateError, which Django's
    middleware answers 400 (`SessionInterrupted`, "the session was deleted"), after the view, where
    `Unavailable` no longer sees it. A login that met a PostgreSQL restart there was told its request
    was bad; it is told to try again (503 with Retry-After), like everything else in an outage.
    """

    def process_response(self, request: HttpRequest, answer: HttpResponse) -> HttpResponse:
        try:
            return super().process_response(request, answer)
        except SessionInterrupted as exc:
            what = part_down(exc)
            if what is None:
                raise
            _warn(request, what, exc)
            return response(what)
