"""A worker survives a broker that goes away (Redis restarted, say) while it holds tasks.

Celery 5.7.0's consumer, on losing its broker connection, collects it (which detaches kombu's
transport from its client) and then closes it (which drops the channel's connection pool). Any
later use of that channel then makes kombu's Redis transport build a pool from the detached
client and fail with `AttributeError` ("'NoneType' object has no attribute 'hostname'", or
"... 'client'"): closing the channel, which restores the messages it holds unacknowledged (a
running `acks_late` task's), and acknowledging a task that finishes after the loss. Celery
takes that for an unrecoverable error and the worker exits: the fault soak met both
(tests/integration/test_fault_soak.py, docs/reliability.md fix 10).

`install()` makes such a channel say what happened, as the connection error it is
(`redis.ConnectionError`), which kombu and Celery already handle: the restore is skipped, the
acknowledgement logged as failed, the worker reconnects. The messages stay in Redis, in the
transport's unacknowledged set, and come back after its visibility timeout; a catch-up's
wake-up is sent again by beat's tick within seconds anyway, and a catch-up that runs twice
applies nothing twice. Everything else is kombu's own.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_original = kombu_redis.Channel._get_pool


def _get_pool(self: Any, asynchronous: bool = False) -> Any:
    transport = getattr(self, "connection", None)
    if transport is None or getattr(transport, "client", None) is None:
        raise redis.ConnectionError("the broker connection of this channel was closed")
    return _original(self, asynchronous)


def install() -> None:
    """Idempotent; called where the Celery app is made (app/celery.py)."""
    kombu_redis.Channel._get_pool = _get_pool  # type: ignore[method-assign]
