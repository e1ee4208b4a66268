"""Wake-ups: an append schedules catch-up of its bucket once its transaction commits.

Tasks are hints, never carriers of events. A burst of appends to one bucket sends one
task (the bucket's wake-up flag, projections.flags); a broker that is down is logged, never
turned into an error for a command that has committed; the beat safety net catches up.
The task is sent by its name: the Celery tasks (projections.tasks) sit above everything here.
"""

from __future__ import annotations

import logging
import time

from celery import current_app
from django.db import transaction

from eventstore.records import BUCKETS, AppendResult, bucket_of
from projections import flags

log = logging.getLogger(__name__)
CATCH_UP_TASK = "projections.catch_up_bucket"


def send_catch_up(bucket: int, countdown: float | None = None) -> None:
    """Queue a catch-up of the bucket, whatever its wake-up flag says (CELERY_TASK_ROUTES routes it)."""
    current_app.send_task(CATCH_UP_TASK, args=(bucket,), countdown=countdown)


class Unsent(Exception):
    """A wake-up could not be sent (Redis or the broker cannot be reached)."""


WARN_EVERY_S = 60.0  # a wake-up that cannot be sent is logged once per this while it lasts
_last_warning = 0.0


def _send(bucket: int) -> None:
    try:
        if flags.claim_wake(bucket):  # else a wake-up for this bucket is already on its way
            send_catch_up(bucket)
    except Exception as exc:
        raise Unsent(bucket) from exc


def _missed(what: str, exc: Unsent) -> None:
    """Log a missed wake-up once per WARN_EVERY_S (with its traceback), not once per command: while
    Redis or the broker is down every append misses one, and beat's tick catches up afterwards."""
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_S:
        _last_warning = now
        log.warning("could not schedule catch-up of %s; the beat safety net will", what, exc_info=exc.__cause__)


def wake(bucket: int) -> None:
    try:
        _send(bucket)
    except Unsent as exc:  # the command has committed: never fail it for a missed hint
        _missed(f"bucket {bucket}", exc)


def wake_all() -> None:
    """Wake every bucket: after a resume, a retry, a skip, a reset or a rebuild's swap, any may have
    work. The first wake-up that cannot be sent ends it: the others would fail alike, each after
    its own timeout, and beat's tick wakes every lagging bucket once Redis and the broker are back."""
    for bucket in range(BUCKETS):
        try:
            _send(bucket)
        except Unsent as exc:
            _missed(f"buckets {bucket} to {BUCKETS - 1}", exc)
            return


def on_append(using: str, result: AppendResult) -> None:
    bucket = bucket_of(result.stream_id)
    transaction.on_commit(lambda: wake(bucket), using=using)
