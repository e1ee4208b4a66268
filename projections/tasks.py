"""Celery tasks: names and bucket numbers in, the work in projections.runner."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import shared_task
from celery.signals import worker_ready
from django.db import connections

from projections import backpressure, processes, rebuild, runner, status, wakeups

log = logging.getLogger(__name__)
RETRY_COUNTDOWN_S = 2.0
REQUEUE_COUNTDOWN_S = 0.02  # another runner's transaction holds the horizon for milliseconds
# Called with (bucket, outcomes by projection, the streams whose events were applied) as soon as
# the projections of a bucket have caught up (before process managers run), e.g. by the console
# to push live hints; a hook that fails is logged, never fails the task.
after_catch_up: list[Callable[[int, dict[str, str], set], None]] = []


@shared_task(name="projections.catch_up_bucket", acks_late=True, reject_on_worker_lost=True)
def catch_up_bucket(bucket: int) -> dict[str, str]:
    """Bring every projection's bucket up to date, then every process manager's (which append,
    so never inside a projection's transaction); re-queue while there is more."""
    wakeups.clear(bucket)
    while True:
        touched: set = set()
        outcomes: dict[str, str] = runner.catch_up_together(bucket, touched=touched)
        _announce(bucket, outcomes, touched)
        outcomes.update(processes.run_all(bucket))
        if "busy" in outcomes.values():
            wakeups.mark_dirty(bucket)  # the holder looks again before it leaves
        if "busy" in outcomes.values() or not wakeups.take_dirty(bucket):
            break
    if "more" in outcomes.values() or runner.behind_horizon(bucket):
        catch_up_bucket.apply_async((bucket,), countdown=REQUEUE_COUNTDOWN_S)
    return outcomes


def _announce(bucket: int, outcomes: dict[str, str], touched: set) -> None:
    for hook in after_catch_up:
        try:
            hook(bucket, outcomes, touched)
        except Exception:
            log.exception("after_catch_up hook failed")


@shared_task(name="projections.tick", acks_late=True)
def tick() -> list[int]:
    """The safety net (beat, every few seconds): wake every bucket that has events not yet applied."""
    lagging = sorted(set(runner.lagging_buckets()) | set(processes.lagging_buckets()))
    for bucket in lagging:
        wakeups.wake(bucket)
    backpressure.publish(status.max_lag() if lagging else 0)
    rebuild.resume_stalled()
    return lagging


@shared_task(name="rebuilds.slice", acks_late=True, reject_on_worker_lost=True)
def rebuild_slice(rebuild_id: int, ticket: int) -> str:
    """A few seconds of a rebuild (its progress is in the database), then its successor is queued."""
    outcome = rebuild.run_slice(rebuild_id, ticket)
    if outcome == "more":
        rebuild_slice.apply_async((rebuild_id, ticket))
    elif outcome == "retry":  # the database went away for a moment
        rebuild_slice.apply_async((rebuild_id, ticket), countdown=RETRY_COUNTDOWN_S)
    return outcome


@worker_ready.connect
def rebuild_changed_projections(**kwargs: object) -> None:
    """A deploy that changed a projection's version rebuilds it (blue/green) as the workers start."""
    try:
        for job in rebuild.rebuild_changed():
            log.info("projection %s changed version: rebuild %s started", job.projection, job.pk)
    except Exception:  # a database not migrated yet, say: the command `rebuild_projection --changed` remains
        log.exception("could not check the projections' versions")
    finally:
        connections.close_all()
