"""Celery tasks of app/integration: the sweep of inbox records and settled dead letters past their
retention (beat, see CELERY_BEAT_SCHEDULE in app/settings.py)."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from app.integration import dead_letters

log = logging.getLogger(__name__)


@shared_task(name="integration.sweep_inbox", bind=True, acks_late=True)
def sweep_inbox(self: Task) -> int:
    """Delete inbox records and settled dead letters past their retention, in bounded batches;
    while more are left, queue itself again."""
    deleted, more = dead_letters.sweep()
    if more:
        self.apply_async()
    if deleted:
        log.info("swept %d inbox records and dead letters%s", deleted, " (more left)" if more else "")
    return deleted
