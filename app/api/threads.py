"""Run blocking work (the ORM, the event store) off the event loop, in a worker thread pool, so
that concurrent requests are not serialised on Django's single shared sync thread.

Each thread of the pool keeps its own database connection from one request to the next, so
every call first makes sure that connection is fit for new work (app/core/connections.py): what
one request left on it must never reach the next.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async

from app.core.connections import start_clean

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        start_clean()  # what Django does per request, and libpq's word that no transaction was left open
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=False)
