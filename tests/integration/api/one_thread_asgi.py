"""`app.asgi:application` with a one-thread default executor, for the connection tests.

The async API views run their blocking work through `app/core/threads.py: in_thread`, on the
event loop's default executor; each of its threads keeps its own database connection from one
request to the next. With a single thread there, every request's work meets the connection the
request before it left behind: what one request leaves on a connection, the next one inherits.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.asgi import application as eventfold

ONE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="the-one-api-thread")


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    asyncio.get_running_loop().set_default_executor(ONE_THREAD)
    await eventfold(scope, receive, send)
