"""Blocking work (the ORM, the event store, password hashing, waits on the database) off the event
loop, in the loop's bounded worker pool, for the REST API, the console and the login.

Under ASGI, Django runs a synchronous view in a thread of the request's own; each such thread
opens a PostgreSQL connection of its own, held for the whole request and left behind after it.
A page that waits (read-your-writes) or hashes a password held both for seconds, and enough of
them at once took every connection the database has. Here the work runs in the loop's pool: its
threads are reused, so are their connections, and their number is bounded. Waits are written as
async code that sleeps on the loop and takes a thread only for each short check. The REST API's
views send their commands and queries through it too.

Each thread of the pool keeps its own database connection from one call to the next, so every
call first makes sure that connection is fit for new work (app/core/connections.py): what one
request left on it must never reach the next.
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
    """`fn` as a coroutine function that runs it in the pool (not on any request's own thread)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        start_clean()  # what Django does per request, and libpq's word that no transaction was left open
        return fn(*args, **kwargs)

    return sync_to_async(run, thread_sensitive=False)
