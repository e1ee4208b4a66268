"""Short-lived flags in Redis, shared by the processes that append, the workers and the beat:

- the buckets waiting for a catch-up (a set), and the wake-up flag: a catch-up task that will take
  them is on its way (a burst of appends, to any buckets, sends one);
- the dirty flag of a bucket: it was busy, so whoever holds it looks again before leaving;
- the published max lag: the largest lag, as the beat measured it, which backpressure reads.

All keys carry the queue prefix, so that the tests' flags never meet a `make run`'s in one Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
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


def key(name: str) -> str:
    """A key of this deployment's (the queue prefix keeps the tests' keys apart from `make run`'s)."""
    return f"eventfold:{settings.QUEUE_PREFIX}{name}"


def wake_key() -> str:
    return key("wake")


def pending_key() -> str:
    return key("pending")


def dirty_key(bucket: int) -> str:
    return key(f"dirty:{bucket}")


def max_lag_key() -> str:
    return key("max-lag")


# Add the bucket to those waiting and set the wake-up flag: 1 when it was absent (the caller sends
# the task that takes the waiting buckets), 0 when one is on its way. With a message (and its queue's
# key, in this Redis: wakeups.py makes it with Celery's own machinery) the script pushes it itself:
# one round trip for the whole wake-up.
_WAKE = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  if ARGV[3] then redis.call('LPUSH', KEYS[3], ARGV[3]) end
  return 1
end
return 0
"""
# The task has started: clear the wake-up flag (later wake-ups send a new task), then take up to
# ARGV[1] waiting buckets; and how many still wait. In this order, atomically: no bucket added in
# between is left without a task on its way.
_TAKE = """
redis.call('DEL', KEYS[2])
local taken = redis.call('SPOP', KEYS[1], ARGV[1])
return {taken, redis.call('SCARD', KEYS[1])}
"""


@cache
def _script(source: str) -> Any:
    return client().register_script(source)


def claim_wake(bucket: int) -> bool:
    """Mark the bucket as waiting, and set the wake-up flag: False if it was set already (a task
    that takes every waiting bucket is on its way). Redis errors reach the caller."""
    return bool(_script(_WAKE)(keys=[pending_key(), wake_key()], args=[bucket, WAKE_MS]))


def claim_wake_and_push(bucket: int, queue_key: str, message: str) -> bool:
    """`claim_wake`, and the message pushed onto `queue_key` (in this Redis) when the flag was
    absent, in one round trip. Redis errors reach the caller."""
    return bool(_script(_WAKE)(keys=[pending_key(), wake_key(), queue_key], args=[bucket, WAKE_MS, message]))


def take_pending(limit: int) -> tuple[list[int], int]:
    """Clear the wake-up flag and take up to `limit` waiting buckets: (them, how many still wait).
    Redis errors reach the caller."""
    taken, left = _script(_TAKE)(keys=[pending_key(), wake_key()], args=[limit])
    return sorted(int(b) for b in taken), int(left)


def mark_dirty(bucket: int) -> None:
    """The bucket was busy: ask whoever holds it to look again before leaving."""
    mark_dirty_of([bucket])


def mark_dirty_of(buckets: Sequence[int]) -> None:
    """`mark_dirty` for each of the buckets, in one round trip."""
    if not buckets:
        return
    try:
        with client().pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.set(dirty_key(bucket), 1, px=DIRTY_MS)
            pipe.execute()
    except Exception:
        log.warning("could not mark buckets %s dirty", list(buckets), exc_info=True)


def take_dirty(bucket: int) -> bool:
    return bucket in take_dirty_of([bucket])


def take_dirty_of(buckets: Sequence[int]) -> set[int]:
    """Those of the buckets that were marked dirty, their marks taken (one round trip)."""
    if not buckets:
        return set()
    try:
        with client().pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.getdel(dirty_key(bucket))
            marks = pipe.execute()
    except Exception:
        return set()
    return {bucket for bucket, mark in zip(buckets, marks, strict=True) if mark}


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
