"""Wake-ups: an append schedules catch-up of its bucket once its transaction commits.

Tasks are hints, never carriers of events. An append adds its bucket to the set of buckets
waiting for a catch-up, and sends a task (`projections.catch_up_pending`) unless one is on its
way already (the wake-up flag, projections.flags): that task takes every waiting bucket (up to
catchup.MAX_BUCKETS per task) and catches them up together. A burst of appends, to any buckets,
sends one task; when commands come faster than one catch-up, each catch-up takes the buckets of
many. A broker that is down is logged, never turned into an error for a command that has
committed; the beat safety net catches up. Tasks are sent by name: the Celery tasks
(projections.tasks) sit above everything here.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import uuid4

from celery import current_app
from django.db import transaction

from eventstore import tracing
from eventstore.records import BUCKETS, AppendResult, bucket_of
from projections import flags

log = logging.getLogger(__name__)
CATCH_UP_TASK = "projections.catch_up_bucket"  # one bucket, when a catch-up has more to do
PENDING_TASK = "projections.catch_up_pending"  # every waiting bucket


def send_catch_up(bucket: int, countdown: float | None = None) -> None:
    """Queue a catch-up of the bucket, whatever the wake-up flag says (CELERY_TASK_ROUTES routes it)."""
    current_app.send_task(CATCH_UP_TASK, args=(bucket,), countdown=countdown)


def send_pending() -> None:
    """Queue a catch-up of the waiting buckets, whatever the wake-up flag says."""
    current_app.send_task(PENDING_TASK)


# -- a wake-up in one Redis round trip -----------------------------------------------------------
# Celery's send_task (its router, its message, kombu's publish, which makes a Redis client object
# per message) was a tenth of an API command's time in the web process, and the flag and the
# message were two round trips (docs/benchmarks.md, P2). When the broker is the flags' own Redis
# and the process does not trace (a traced process sends through Celery, whose instrumentation
# puts the trace context in the message), the task's message is made once by Celery and kombu
# themselves, with placeholder ids caught where kombu would push it, and each wake-up then adds
# its bucket, sets the flag and pushes a copy with fresh ids in one script
# (flags.claim_wake_and_push). Anything unexpected in the making sends through Celery instead.
_TASK_ID = "eventfold-wake-task-id"
_UNMADE: Any = object()
_fast: Any = _UNMADE  # (queue key, message, its delivery tag), or None: this process sends through Celery
REMAKE_AFTER_S = 30.0  # a message that could not be made (the broker away) is tried again after this
_unmade_until = 0.0


def _made() -> tuple[str, str, str] | None:
    """The pending task's message as Celery and kombu make it, caught instead of pushed: (the
    Redis key of its queue, the message as JSON, the delivery tag in it); None when the broker is
    not this Redis or the queue is not a plain list."""
    from kombu import Producer
    from kombu.utils.json import dumps

    app = current_app
    caught: dict[str, Any] = {}
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        if not hasattr(channel, "_q_for_pri") or getattr(channel, "_expires", None):
            return None  # not kombu's Redis transport, or queues that expire
        if _where(flags.client()) != _where(channel.client):
            return None  # another Redis: the flag and the message cannot go in one script
        channel._put = lambda queue, message, **_: caught.update(queue=queue, message=message)
        app.send_task(PENDING_TASK, task_id=_TASK_ID, producer=Producer(channel))
        message = caught["message"]
        key = channel._q_for_pri(caught["queue"], channel._get_message_priority(message, reverse=False))
        prefix = getattr(channel, "global_keyprefix", "") or ""
    return prefix + key, dumps(message), str(message["properties"]["delivery_tag"])


def _where(client: Any) -> tuple[Any, ...]:
    """The server and database a Redis client talks to (a unix socket's client names no database: 0)."""
    given = client.connection_pool.connection_kwargs
    return given.get("host"), given.get("port"), given.get("path"), int(given.get("db") or 0)


def _fast_wake(bucket: int) -> bool | None:
    """Mark the bucket waiting, claim the wake-up and push the task's message in one round trip:
    whether it was claimed, or None when this process sends through Celery."""
    global _fast, _unmade_until
    if tracing.active():
        return None
    if _fast is _UNMADE:
        if time.monotonic() < _unmade_until:
            return None
        try:
            _fast = _made()
        except Exception:  # the broker away, say: through Celery, and try making it again later
            log.warning("could not make the catch-up message: sending through Celery", exc_info=True)
            _unmade_until = time.monotonic() + REMAKE_AFTER_S
            return None
    if _fast is None:
        return None
    key, message, tag = _fast
    fresh = message.replace(_TASK_ID, str(uuid4())).replace(tag, str(uuid4()))
    return flags.claim_wake_and_push(bucket, key, fresh)


class Unsent(Exception):
    """A wake-up could not be sent (Redis or the broker cannot be reached)."""


WARN_EVERY_S = 60.0  # a wake-up that cannot be sent is logged once per this while it lasts
_last_warning = 0.0


def _send(bucket: int) -> None:
    try:
        if _fast_wake(bucket) is None and flags.claim_wake(bucket):  # else one is already on its way
            send_pending()
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
