"""Idempotency-Key: a command sent again with the same key and request gets the first result and
acts no more.

Inside the command's transaction, a transaction-level advisory lock on (user, key) serialises
concurrent duplicates. The lock writes nothing, so the command's append stays the transaction's
first write. Only results of commands that succeeded are kept, for KEEP_FOR. The command id (and
so every event id) derives from the user, the key and the request, so even a retry made after
the record is gone appends nothing twice.

Records older than KEEP_FOR are never read again; `sweep` deletes them (beat runs it through the
task `core.sweep_idempotency`, app/core/tasks.py) so the table does not grow for ever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid5

from django.db import connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from app.core.models import ProcessedCommand

KEEP_FOR = timedelta(hours=24)
NAMESPACE = UUID("0f7f9d43-2f0c-4c51-9b6e-2b3f54f0c1e1")
MAX_KEY_LENGTH = 255
SWEEP_BATCH = 1000  # rows per DELETE: each its own short transaction, a short hold on the read horizon
SWEEP_MAX_BATCHES = 100  # per call; the task queues itself again while more are left
R = TypeVar("R")


class InvalidKey(ValueError):
    """The Idempotency-Key is empty or too long."""

    def __init__(self) -> None:
        super().__init__(f"Idempotency-Key must have 1 to {MAX_KEY_LENGTH} characters")


class KeyReused(Exception):
    """The key was used before with another request."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with another request")


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What a key is sent with: the request's method, path and body."""
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey()
    return key


def command_id(user_id: int, key: str, print_: str) -> UUID:
    """The command id (and so the event ids) a keyed command always gets."""
    return uuid5(NAMESPACE, f"{user_id}:{key}:{print_}")


def run(
    user_id: int,
    key: str,
    print_: str,
    produce: Callable[[], R],
    *,
    keep: Callable[[R], Mapping[str, Any]],
    restore: Callable[[Mapping[str, Any]], R],
) -> R:
    """The result kept for (user, key), or `produce()`'s, kept (as `keep` makes it) for next time."""
    check_key(key)
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"idempotency:{user_id}:{key}"])
        kept = ProcessedCommand.objects.filter(
            user_id=user_id, key=key, created_at__gte=timezone.now() - KEEP_FOR
        ).first()
        if kept is not None:
            if kept.fingerprint != print_:
                raise KeyReused()
            return restore(kept.result)
        result = produce()
        ProcessedCommand.objects.update_or_create(
            user_id=user_id,
            key=key,
            defaults={"fingerprint": print_, "result": dict(keep(result)), "created_at": timezone.now()},
        )
        return result


def sweep(*, batch: int = SWEEP_BATCH, max_batches: int = SWEEP_MAX_BATCHES) -> tuple[int, bool]:
    """Delete records older than KEEP_FOR, oldest first, `batch` at a time (each DELETE its own
    short transaction: it takes a transaction id, and a long one would hold back the read horizon
    of every projection), at most `max_batches` times. Returns how many went and whether more
    are left.

    The age is checked again on the rows being deleted, not only when choosing them: a command
    whose key came back after its 24 hours refreshes its row meanwhile, and keeps it."""
    cutoff = timezone.now() - KEEP_FOR
    deleted = 0
    for _ in range(max_batches):
        oldest = ProcessedCommand.objects.filter(created_at__lt=cutoff).order_by("created_at").values("pk")[:batch]
        gone, _ = ProcessedCommand.objects.filter(pk__in=Subquery(oldest), created_at__lt=cutoff).delete()
        deleted += gone
        if gone < batch:
            return deleted, False
    return deleted, True


def erase(stream_ids: Iterable[UUID], *, keep: tuple[int | None, str | None] = (None, None)) -> int:
    """Delete the kept results of commands on streams of a subject being forgotten: a key and a
    request fingerprint (a SHA-256 of a body that may hold the name) come from requests about the
    person. `keep` (user id, key): the record of the forgetting request itself, which names no
    one. Returns how many went. (A full scan of at most a day of records: forgetting is rare.)"""
    records = ProcessedCommand.objects.filter(result__stream_id__in=[str(s) for s in stream_ids])
    user_id, key = keep
    if user_id is not None and key is not None:
        records = records.exclude(user_id=user_id, key=key)
    gone, _ = records.delete()
    return gone
