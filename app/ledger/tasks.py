"""The ledger's Celery tasks: the work is in app/ledger/process.py."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from app.ledger import process


@shared_task(name="ledger.expire_transfers", acks_late=True)
def expire_transfers() -> list[str]:
    """Beat: fail the transfers stuck past the deadline (EVENTFOLD_TRANSFER_DEADLINE_S)."""
    return [str(t) for t in process.expire_transfers(deadline_s=settings.EVENTFOLD_TRANSFER_DEADLINE_S)]
