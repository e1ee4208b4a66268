"""Is the stack up? The database, the broker and the Celery workers, each checked with a short
timeout and remembered for a few seconds per process, so `/healthz` and the console's
dashboard can ask often without pinging the workers on every request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from django.db import connection

log = logging.getLogger(__name__)

T = TypeVar("T")
REMEMBER_S = 5.0
BROKER_TIMEOUT_S = 1.0
PING_TIMEOUT_S = 0.5

_memo: dict[str, tuple[float, Any]] = {}
_memo_lock = threading.Lock()


def cached(key: str, seconds: float, compute: Callable[[], T]) -> T:
    """`compute()`, remembered per process for `seconds` (no shared cache: it may be what is down)."""
    now = time.monotonic()
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    value = compute()
    with _memo_lock:
        _memo[key] = (time.monotonic(), value)
    return value


class Health(NamedTuple):
    database: str | None  # None: fine; else what went wrong
    broker: str | None
    workers: list[str]  # the names of the workers that answered a ping

    @property
    def failing(self) -> list[str]:
        return [
            part
            for part, bad in (
                ("database", self.database is not None),
                ("broker", self.broker is not None),
                ("workers", self.broker is None and not self.workers),
            )
            if bad
        ]

    @property
    def ok(self) -> bool:
        return not self.failing


def check_database() -> str | None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:
        return type(exc).__name__
    return None


def check_broker() -> str | None:
    from app.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def ping_workers() -> list[str]:
    from app.celery import app

    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_S) or []
    except Exception:
        log.warning("worker ping failed", exc_info=True)
        return []
    return sorted(name for reply in replies for name in reply)


def _check() -> Health:
    broker = check_broker()
    workers = ping_workers() if broker is None else []  # no broker: a ping could only hang
    return Health(database=None, broker=broker, workers=workers)


def health() -> Health:
    """The database is asked each time (it is cheap); broker and workers at most every few seconds."""
    remote = cached("health", REMEMBER_S, _check)
    return remote._replace(database=check_database())
