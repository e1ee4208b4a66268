"""Wake-ups: an append schedules catch-up of its bucket once its transaction commits.

Tasks are hints, never carriers of events. A burst of appends to one bucket sends one
task (a short-lived per-bucket flag in Redis); a broker that is down is logged, never
turned into an error for a command that has committed; the beat safety net catches up.
"""

from __future__ import annotations

import logging
from functools import cache

import redis
from django.conf import settings
from django.db import transaction

from eventstore.records import BUCKETS, AppendResult, bucket_of

log = logging.getLogger(__name__)
FLAG_MS = 1000


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


def flag_key(bucket: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}wake:{bucket}"


def wake(bucket: int) -> None:
    try:
        if not _redis().set(flag_key(bucket), 1, nx=True, px=FLAG_MS):
            return  # a wake-up for this bucket is already on its way
        from projections.tasks import catch_up_bucket

        catch_up_bucket.apply_async((bucket,))
    except Exception:  # the command has committed: never fail it for a missed hint
        log.warning("could not schedule catch-up of bucket %s; the beat safety net will", bucket, exc_info=True)


def wake_all() -> None:
    """Wake every bucket: after a resume, a retry or a skip, any of them may have work."""
    for bucket in range(BUCKETS):
        wake(bucket)


def on_append(using: str, result: AppendResult) -> None:
    bucket = bucket_of(result.stream_id)
    transaction.on_commit(lambda: wake(bucket), using=using)


def dirty_key(bucket: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}dirty:{bucket}"


def clear(bucket: int) -> None:
    """The task for this bucket has started: later appends must send a new one."""
    try:
        _redis().delete(flag_key(bucket))
    except Exception:
        log.warning("could not clear the wake-up flag of bucket %s", bucket, exc_info=True)


def mark_dirty(bucket: int) -> None:
    """The bucket was busy: ask whoever holds it to look again before leaving."""
    try:
        _redis().set(dirty_key(bucket), 1, px=60_000)
    except Exception:
        log.warning("could not mark bucket %s dirty", bucket, exc_info=True)


def take_dirty(bucket: int) -> bool:
    try:
        return bool(_redis().getdel(dirty_key(bucket)))
    except Exception:
        return False
