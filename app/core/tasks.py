"""Celery tasks of app/core: the sweep of expired Idempotency-Key records (beat, see
CELERY_BEAT_SCHEDULE in app/settings.py)."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from app.core import idempotency

log = logging.getLogger(__name__)


@shared_task(name="core.sweep_idempotency", bind=True, acks_late=True)
def sweep_idempotency(self: Task) -> int:
    """Delete the Idempotency-Key records past their 24 hours, in bounded batches; while more are
    left, queue itself again (a backlog drains without waiting for the next beat)."""
    deleted, more = idempotency.sweep()
    if more:
        self.apply_async()
    if deleted:
        log.info("swept %d expired idempotency records%s", deleted, " (more left)" if more else "")
    return deleted
