"""Dead letters: inbound messages that could not be handled, kept in a table with their reason
until an operator replays them (app/integration/inbox.py: `replay`) or discards them.

A message id is parked once: the same message parked again (redelivered before its
acknowledgement, say) updates its row (reason, attempts, last seen). Bodies are kept as received,
cut to INBOX_MAX_BODY_BYTES; details never quote the message's content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, QuerySet, Subquery
from django.utils import timezone

from app.integration.messages import Received
from app.integration.models import DeadLetter, InboxMessage
from eventstore.inputs import text_problem

HEADERS_MAX = 50
HEADER_TEXT_MAX = 1000
SWEEP_BATCH = 1000  # rows per DELETE: each its own short transaction
SWEEP_MAX_BATCHES = 100  # per call and table; the task queues itself again while more are left
PAGE = 100


class NotParked(Exception):
    """Only a parked dead letter can be replayed or discarded."""

    def __init__(self, status: str) -> None:
        super().__init__(f"this dead letter was {status} already")
        self.status = status


# -- parking ------------------------------------------------------------------------------------
def park(message: Received, *, reason: str, detail: str, attempts: int) -> DeadLetter:
    """Keep `message` as a dead letter (or update the row of the same message id)."""
    now = timezone.now()
    message_id = message.message_id if _storable_id(message.message_id) else None
    fresh = {"reason": reason, "detail": detail[:2000], "last_seen": now}
    if message_id is not None:
        found = _park_again(message_id, fresh, attempts)
        if found is not None:
            return found
    try:
        with transaction.atomic():
            return DeadLetter.objects.create(
                message_id=message_id,
                type=_text(message.type),
                routing_key=_text(message.routing_key),
                headers=storable_headers(message.headers),
                correlation_id=_text(message.correlation_id or "", 100),
                body=bytes(message.body[: settings.INBOX_MAX_BODY_BYTES]),
                body_truncated=message.truncated or len(message.body) > settings.INBOX_MAX_BODY_BYTES,
                attempts=attempts,
                first_seen=now,
                **fresh,
            )
    except IntegrityError:  # parked meanwhile by another consumer
        assert message_id is not None
        found = _park_again(message_id, fresh, attempts)
        assert found is not None
        return found


def _park_again(message_id: str, fresh: dict[str, Any], attempts: int) -> DeadLetter | None:
    """A parked letter takes the new reason; a settled one (replayed, discarded) stays as it is."""
    DeadLetter.objects.filter(message_id=message_id, status=DeadLetter.Status.PARKED).update(
        attempts=F("attempts") + attempts, **fresh
    )
    return DeadLetter.objects.filter(message_id=message_id).first()


def failed_again(letter_id: int, *, reason: str, detail: str) -> None:
    """A replay that failed: the letter stays parked, with the new reason."""
    DeadLetter.objects.filter(pk=letter_id, status=DeadLetter.Status.PARKED).update(
        reason=reason, detail=detail[:2000], attempts=F("attempts") + 1, last_seen=timezone.now()
    )


def settle(letter_id: int, status: str, user: Any) -> None:
    """Mark a parked letter replayed or discarded by `user`, now; NotParked if someone else
    settled it first (the caller's transaction then rolls back)."""
    settled = DeadLetter.objects.filter(pk=letter_id, status=DeadLetter.Status.PARKED).update(
        status=status, settled_by=user, settled_at=timezone.now()
    )
    if not settled:
        raise NotParked(DeadLetter.objects.values_list("status", flat=True).get(pk=letter_id))


def discard(letter_id: int, *, user: Any) -> None:
    """An operator gives up on a parked message: it stays listed as discarded, by whom and when."""
    with transaction.atomic():
        settle(letter_id, DeadLetter.Status.DISCARDED, user)


# -- what is kept must fit PostgreSQL --------------------------------------------------------------
def _storable_id(message_id: str | None) -> bool:
    return isinstance(message_id, str) and 0 < len(message_id) <= 255 and text_problem(message_id) is None


def _text(value: object, limit: int = HEADER_TEXT_MAX) -> str:
    """Text fit for PostgreSQL (no NUL, no lone surrogate) and bounded."""
    text = (
        value if isinstance(value, str) else value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    )
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")[:limit]


def storable_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The message's headers as JSON PostgreSQL can keep: at most HEADERS_MAX, values that are
    not plain JSON as text, every text bounded."""
    kept: dict[str, Any] = {}
    for key, value in list(headers.items())[:HEADERS_MAX]:
        plain = value if isinstance(value, bool | int | float) or value is None else _text(value)
        kept[_text(key, 100)] = plain
    json.dumps(kept)  # (cannot fail: everything is text, a number or None)
    return kept


# -- selectors ----------------------------------------------------------------------------------
def dead_letter_list(*, status: str | None = None, limit: int = PAGE) -> list[DeadLetter]:
    letters = DeadLetter.objects.select_related("settled_by").defer("body", "headers").order_by("-last_seen", "-pk")
    if status:
        letters = letters.filter(status=status)
    return list(letters[:limit])


def dead_letter_get(letter_id: int) -> DeadLetter | None:
    return DeadLetter.objects.select_related("settled_by").filter(pk=letter_id).first()


def by_status() -> dict[str, int]:
    counts = dict(DeadLetter.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in DeadLetter.Status.values}


# -- retention ----------------------------------------------------------------------------------
def sweep(*, batch: int = SWEEP_BATCH, max_batches: int = SWEEP_MAX_BATCHES) -> tuple[int, bool]:
    """Delete inbox records older than INBOX_RETENTION_S and settled dead letters (replayed or
    discarded) settled longer than DEAD_LETTER_RETENTION_S ago, oldest first, `batch` rows per
    DELETE (each its own short transaction: a long one would hold back the read horizon). Parked
    letters stay until an operator settles them. Returns how many went and whether more are left."""
    now = timezone.now()
    inbox = InboxMessage.objects.filter(handled_at__lt=now - timedelta(seconds=settings.INBOX_RETENTION_S))
    settled = DeadLetter.objects.exclude(status=DeadLetter.Status.PARKED).filter(
        settled_at__lt=now - timedelta(seconds=settings.DEAD_LETTER_RETENTION_S)
    )
    gone_inbox, more_inbox = _sweep(inbox, "handled_at", batch, max_batches)
    gone_letters, more_letters = _sweep(settled, "settled_at", batch, max_batches)
    return gone_inbox + gone_letters, more_inbox or more_letters


def _sweep(rows: QuerySet[Any], age: str, batch: int, max_batches: int) -> tuple[int, bool]:
    deleted = 0
    for _ in range(max_batches):
        oldest = rows.order_by(age).values("pk")[:batch]
        gone, _ = rows.filter(pk__in=Subquery(oldest)).delete()
        deleted += gone
        if gone < batch:
            return deleted, False
    return deleted, True
