"""Celery tasks: names and ids in, the work in projections.catchup, runner and rebuild.
Nothing in projections imports this module: the others send these tasks by name."""

from __future__ import annotations

import logging
import time

import psycopg
from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from projections import catchup, flags, metrics, processes, rebuild, runner, status, wakeups

log = logging.getLogger(__name__)
RETRY_COUNTDOWN_S = 2.0


@shared_task(name=wakeups.CATCH_UP_TASK, acks_late=True, reject_on_worker_lost=True)
def catch_up_bucket(bucket: int) -> dict[str, processes.Outcome]:
    """Bring the bucket up to date for every projection and process manager (re-queued while there is more).

    A worker keeps its database connection from task to task (CELERY_DB_REUSE_MAX): when the
    server dropped it meanwhile (a restart), the catch-up runs again once on a new one. Each
    batch commits with its checkpoint, so running again applies nothing twice."""
    try:
        return catchup.catch_up_bucket(bucket)
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError):
        log.info("catch-up of bucket %s met a dropped database connection: again on a new one", bucket)
        connections.close_all()
    return catchup.catch_up_bucket(bucket)  # outside the handler: its errors are its own, not the first's


@shared_task(name=wakeups.PENDING_TASK, acks_late=True, reject_on_worker_lost=True)
def catch_up_pending() -> dict[int, dict[str, processes.Outcome]]:
    """Bring the buckets that wait for a catch-up up to date, together (re-queued while one has more),
    after CATCH_UP_GATHER_S, so that the appends of that moment join them.
    A dropped database connection is met as `catch_up_bucket` meets it; the buckets taken are
    caught up on the new one."""
    time.sleep(settings.CATCH_UP_GATHER_S)  # the appends of this moment join this task (the flag stands)
    buckets, left = flags.take_pending(catchup.MAX_BUCKETS)
    if left:
        wakeups.send_pending()  # for the rest: another worker process may take them meanwhile
    try:
        return catchup.catch_up_buckets(buckets)
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError):
        log.info("catch-up of buckets %s met a dropped database connection: again on a new one", buckets)
        connections.close_all()
    return catchup.catch_up_buckets(buckets)


@shared_task(name="projections.tick", acks_late=True)
def tick() -> list[int]:
    """The safety net (beat, every few seconds): wake every bucket that has events not yet applied."""
    lagging = sorted(set(runner.lagging_buckets()) | set(processes.lagging_buckets()))
    for bucket in lagging:
        wakeups.wake(bucket)
    flags.publish_max_lag(status.max_lag() if lagging else 0)
    rebuild.resume_stalled()
    return lagging


@shared_task(name=rebuild.SLICE_TASK, acks_late=True, reject_on_worker_lost=True)
def rebuild_slice(rebuild_id: int, ticket: int) -> str:
    """A few seconds of a rebuild (its progress is in the database), then its successor is queued."""
    outcome = rebuild.run_slice(rebuild_id, ticket)
    if outcome == "more":
        rebuild_slice.apply_async((rebuild_id, ticket))
    elif outcome == "retry":  # the database went away for a moment
        rebuild_slice.apply_async((rebuild_id, ticket), countdown=RETRY_COUNTDOWN_S)
    return outcome


@worker_ready.connect
def start_heartbeat(sender: object = None, **kwargs: object) -> None:
    """The worker's heartbeat (projections.metrics), from its main process while it runs."""
    metrics.start_heartbeat(str(getattr(sender, "hostname", None) or "worker"))


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
