"""Run blocking work (the ORM, the event store) off the event loop, in a worker thread pool, so
that concurrent requests are not serialised on Django's single shared sync thread."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()  # what Django does per request, for this thread's connection
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=False)
