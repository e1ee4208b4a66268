"""Short-lived flags in Redis, shared by the processes that append, the workers and the beat:

- the wake-up flag of a bucket: a catch-up task for it is on its way (a burst of appends sends one);
- the dirty flag of a bucket: it was busy, so whoever holds it looks again before leaving;
- the published max lag: the largest lag, as the beat measured it, which backpressure reads.

All keys carry the queue prefix, so that the tests' flags never meet a `make run`'s in one Redis.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

import redis
from django.conf import settings

log = logging.getLogger(__name__)
WAKE_MS = 1000
DIRTY_MS = 60_000
MAX_LAG_KEEP_S = 30  # a stale figure (beat stopped) expires instead of blocking commands forever


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, **settings.REDIS_CLIENT_OPTIONS)


def wake_key(bucket: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}wake:{bucket}"


def dirty_key(bucket: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}dirty:{bucket}"


def max_lag_key() -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}max-lag"


def claim_wake(bucket: int) -> bool:
    """Set the bucket's wake-up flag; False if it was set already. Redis errors reach the caller."""
    return bool(client().set(wake_key(bucket), 1, nx=True, px=WAKE_MS))


# Set the bucket's wake-up flag and, when it was absent, push the catch-up task's message onto its
# queue: one round trip (wakeups.py makes the message, with Celery's own machinery).
_WAKE_AND_PUSH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


@cache
def _wake_and_push() -> Any:
    return client().register_script(_WAKE_AND_PUSH)


def claim_wake_and_push(bucket: int, queue_key: str, message: str) -> bool:
    """`claim_wake`, and the message pushed onto `queue_key` (in this Redis) when the flag was
    absent, in one round trip. Redis errors reach the caller."""
    return bool(_wake_and_push()(keys=[wake_key(bucket), queue_key], args=[WAKE_MS, message]))


def clear_wake(bucket: int) -> None:
    """The task for this bucket has started: later appends must send a new one."""
    try:
        client().delete(wake_key(bucket))
    except Exception:
        log.warning("could not clear the wake-up flag of bucket %s", bucket, exc_info=True)


def mark_dirty(bucket: int) -> None:
    """The bucket was busy: ask whoever holds it to look again before leaving."""
    try:
        client().set(dirty_key(bucket), 1, px=DIRTY_MS)
    except Exception:
        log.warning("could not mark bucket %s dirty", bucket, exc_info=True)


def take_dirty(bucket: int) -> bool:
    try:
        return bool(client().getdel(dirty_key(bucket)))
    except Exception:
        return False


def publish_max_lag(lag: int) -> None:
    try:
        client().set(max_lag_key(), lag, ex=MAX_LAG_KEEP_S)
    except Exception:
        log.warning("could not publish the projection lag", exc_info=True)
    else:
        _recent_lag[:] = [lag, clock()]  # this process sees its own figure at once


clock = time.monotonic  # recent_max_lag's clock (a test moves it)
_recent_lag: list[float] = []  # [lag, read at]: the last figure this process read or published


def recent_max_lag() -> int:
    """The published lag as this process read it less than MAX_LAG_READ_EVERY_S ago (the beat
    publishes every few seconds: reading Redis on every command bought no fresher figure, and cost
    a round trip per command, a tenth of its time in P2's profile, docs/benchmarks.md)."""
    now = clock()
    if _recent_lag and now - _recent_lag[1] < settings.BACKPRESSURE_READ_EVERY_S:
        return int(_recent_lag[0])
    lag = published_max_lag()
    _recent_lag[:] = [lag, now]
    return lag


def published_max_lag() -> int:
    try:
        value = client().get(max_lag_key())
    except Exception:
        return 0  # Redis down: do not refuse commands for that
    return int(value or 0)
