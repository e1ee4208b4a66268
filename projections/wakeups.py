"""Wake-ups: an append schedules catch-up of its bucket once its transaction commits.

Tasks are hints, never carriers of events. A burst of appends to one bucket sends one
task (the bucket's wake-up flag, projections.flags); a broker that is down is logged, never
turned into an error for a command that has committed; the beat safety net catches up.
The task is sent by its name: the Celery tasks (projections.tasks) sit above everything here.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

from eventstore.records import BUCKETS, AppendResult, bucket_of
from projections import flags

log = logging.getLogger(__name__)
CATCH_UP_TASK = "projections.catch_up_bucket"


def send_catch_up(bucket: int, countdown: float | None = None) -> None:
    """Queue a catch-up of the bucket, whatever its wake-up flag says (CELERY_TASK_ROUTES routes it)."""
    current_app.send_task(CATCH_UP_TASK, args=(bucket,), countdown=countdown)


def wake(bucket: int) -> None:
    try:
        if flags.claim_wake(bucket):  # else a wake-up for this bucket is already on its way
            send_catch_up(bucket)
    except Exception:  # the command has committed: never fail it for a missed hint
        log.warning("could not schedule catch-up of bucket %s; the beat safety net will", bucket, exc_info=True)


def wake_all() -> None:
    """Wake every bucket: after a resume, a retry, a skip, a reset or a rebuild's swap, any may have work."""
    for bucket in range(BUCKETS):
        wake(bucket)


def on_append(using: str, result: AppendResult) -> None:
    bucket = bucket_of(result.stream_id)
    transaction.on_commit(lambda: wake(bucket), using=using)
