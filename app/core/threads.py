"""Blocking work (the ORM, password hashing, waits on the database) off the event loop, in the
loop's bounded worker pool, for the console and the login.

Under ASGI, Django runs a synchronous view in a thread of the request's own; each such thread
opens a PostgreSQL connection of its own, held for the whole request and left behind after it.
A page that waits (read-your-writes) or hashes a password held both for seconds, and enough of
them at once took every connection the database has. Here the work runs in the loop's pool: its
threads are reused, so are their connections, and their number is bounded. Waits are written as
async code that sleeps on the loop and takes a thread only for each short check.
(app/api/threads.py does the same for the REST API, a layer that cannot import the console's.)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`fn` as a coroutine function that runs it in the pool (not on any request's own thread)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()  # what Django does per request, for this thread's connection
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=False)
