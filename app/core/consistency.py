"""Read-your-writes: wait (bounded) until the projections a page or a query reads have applied
the event at a position a command returned (`?consistent_with=`), for the REST API and the
console alike.

The wait sleeps on the event loop and takes a pool thread (app/core/threads.py) only for each
short check, polling often at first and less often later, so a waiting request holds neither a
thread nor a database connection.
"""

from __future__ import annotations

import asyncio
import time

from django.conf import settings

from app.core.threads import in_thread
from projections import status

FIRST_PAUSE_S = 0.01
LONGEST_PAUSE_S = 0.25


async def wait_applied(names: list[str], position: int) -> bool:
    """True once every projection in `names` has applied `position`; False after
    CONSISTENCY_TIMEOUT_S (the answer is then marked stale)."""
    deadline = time.monotonic() + settings.CONSISTENCY_TIMEOUT_S
    pause = FIRST_PAUSE_S
    while not await in_thread(status.applied)(names, position):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE_S)
    return True
