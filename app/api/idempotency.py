"""Idempotency-Key: a retried command gets the first response and appends nothing.

Inside the command's transaction, a transaction-level advisory lock on (user, key) serialises
concurrent duplicates. The lock writes nothing, so the command's append stays the
transaction's first write. Only successful (2xx) responses are kept, for KEEP_FOR.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

from django.db import connection, transaction
from django.utils import timezone

from app.api.errors import ApiError
from app.api.models import ProcessedCommand

KEEP_FOR = timedelta(hours=24)
NAMESPACE = UUID("0f7f9d43-2f0c-4c51-9b6e-2b3f54f0c1e1")
MAX_KEY_LENGTH = 255


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()


def command_id(user_id: int, key: str, print_: str) -> UUID:
    """The command id (and so the event ids) a keyed request always gets."""
    return uuid5(NAMESPACE, f"{user_id}:{key}:{print_}")


def run(user_id: int, key: str, print_: str, produce: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, dict]:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError(
            422,
            "validation_error",
            f"Idempotency-Key must have 1 to {MAX_KEY_LENGTH} characters",
            fields={"Idempotency-Key": ["invalid length"]},
        )
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"idempotency:{user_id}:{key}"])
        kept = ProcessedCommand.objects.filter(
            user_id=user_id, key=key, created_at__gte=timezone.now() - KEEP_FOR
        ).first()
        if kept is not None:
            if kept.fingerprint != print_:
                raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with another request")
            return kept.status_code, kept.response
        status, body = produce()
        if 200 <= status < 300:
            ProcessedCommand.objects.update_or_create(
                user_id=user_id,
                key=key,
                defaults={"fingerprint": print_, "status_code": status, "response": body, "created_at": timezone.now()},
            )
        return status, body
