"""Every unit of work starts on a clean database connection: each API call in a worker thread
(app/core/threads.py), each request and each Celery task.

Django keeps one connection per thread and reuses it from one request (or task) to the next.
Its own check between them (`close_old_connections`) trusts its bookkeeping: it closes a
connection past CONN_MAX_AGE, one whose autocommit was not restored, and one that raised a
database error *through Django's cursor* and no longer answers. Work that talks to psycopg or
libpq directly (the event store's fast path, its psycopg cursors) never tells Django, so a
connection left inside a transaction, or in a failed one, would be handed as it is to whatever
runs next on that thread, which then fails for no fault of its own. So after Django's check,
libpq itself is asked (`transaction_status`, no round trip): a connection that is not idle
outside a transaction is closed, and the next query opens a new one. That is always a bug
somewhere, so it is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_prerun
from django.core.signals import request_started
from django.db import close_old_connections, connections
from psycopg import pq

log = logging.getLogger(__name__)


def start_clean() -> None:
    """Make every connection of this thread fit for new work: Django's own checks, then libpq's
    word that none is left in a transaction (else it is closed: the next query opens a new one)."""
    close_old_connections()
    close_dirty()


def close_dirty() -> None:
    """Close each connection of this thread that libpq says is not idle outside a transaction
    (left open, failed, or dropped by the server), unless Django has a transaction under way on it."""
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is None or conn.in_atomic_block:  # none open, or work under way (a test's transaction)
            continue
        status = raw.info.transaction_status
        if status == pq.TransactionStatus.IDLE:
            continue
        log.warning("database connection %r was left %s by earlier work: closed", conn.alias, status.name)
        conn.close()


# Django (on request_started) runs its own checks already, and Django's test client turns its own
# off during a request: only libpq's is added. Celery's Django fix-up only closes connections (every
# CELERY_DB_REUSE_MAX tasks), so before a task both run.
def before_request(**_: Any) -> None:
    close_dirty()


def _before_task(task: Any = None, **_: Any) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return  # run in the caller's thread, as part of the caller's work
    start_clean()


def install() -> None:
    """Check connections before every request and every Celery task (CoreConfig.ready calls this)."""
    request_started.connect(before_request, dispatch_uid="eventfold-clean-connections")
    task_prerun.connect(_before_task, dispatch_uid="eventfold-clean-connections", weak=False)
