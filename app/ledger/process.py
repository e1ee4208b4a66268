"""The transfer process manager: drives each transfer to its end.

    TransferRequested       -> debit the source (or fail: insufficient_funds, account_frozen, account_closed)
    TransferDebited         -> confirm the debit on the transfer (or, if it expired meanwhile, refund)
    TransferDebitConfirmed  -> credit the target (or fail: account_closed when it was closed meanwhile)
    TransferCredited        -> complete the transfer
    TransferCompleted       -> settle the source (the money is no longer in flight)
    TransferFailed          -> refund the source, if it was debited
    TransferRefunded        -> confirm the refund on the transfer

Each step is one command on one stream (app/ledger/handlers.py, through commands.step), with
event ids derived from the triggering event's, so redelivery is harmless. A transfer still
pending `deadline_s` after its request, and whose debit is not confirmed, is failed as expired
(beat: app/ledger/tasks.py); the TransferFailed step then refunds the source if it was
debited. Once the debit is confirmed, the credit decides: completed, or failed and refunded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.utils import timezone

from app.ledger import handlers
from app.ledger.commands import CommandContext, NotFound
from app.ledger.models import TransferSummary
from eventstore.errors import ConcurrencyError
from eventstore.records import RecordedEvent
from eventstore.store import EventStore
from projections.context import applying
from projections.processes import ProcessManager, handles, register

log = logging.getLogger(__name__)

ACTOR = "process:transfers"
EXPIRE_BATCH = 500


def context(event: RecordedEvent) -> CommandContext:
    """The context of a step triggered by `event`: in the transfer's correlation, caused by the
    event, and with the event's id as the command id that the step's ids derive from."""
    correlation = event.metadata.get("correlation_id")
    return CommandContext(
        actor=ACTOR,
        command_id=event.event_id,
        correlation_id=UUID(correlation) if correlation else None,
        causation_id=event.event_id,
    )


def _step(command: Callable[..., Any], transfer_id: UUID, event: RecordedEvent) -> None:
    try:
        command(transfer_id=transfer_id, ctx=context(event))
    except NotFound as missing:  # appended around the handlers: nothing to act on, never worth parking
        log.warning("transfer %s: no %s %s; the step is left undone", transfer_id, missing.kind, missing.id)


def _transfer_of(event: RecordedEvent) -> UUID:
    """The transfer an account event (debited, credited, refunded) belongs to."""
    return UUID(event.data["transfer_id"])


@register
class TransferProcess(ProcessManager):
    name = "transfer_process"

    @handles("ledger.TransferRequested")
    def requested(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_debit, e.stream_id, e)

    @handles("ledger.TransferDebited")
    def debited(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_confirm_debit, _transfer_of(e), e)

    @handles("ledger.TransferDebitConfirmed")
    def debit_confirmed(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_credit, e.stream_id, e)

    @handles("ledger.TransferCredited")
    def credited(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_complete, _transfer_of(e), e)

    @handles("ledger.TransferCompleted")
    def completed(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_settle, e.stream_id, e)

    @handles("ledger.TransferFailed")
    def failed(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_refund, e.stream_id, e)

    @handles("ledger.TransferRefunded")
    def refunded(self, e: RecordedEvent) -> None:
        _step(handlers.transfer_confirm_refund, _transfer_of(e), e)


def expire_transfers(*, deadline_s: float, now: datetime | None = None) -> list[UUID]:
    """Fail the transfers still pending `deadline_s` after their request and not yet debit-confirmed
    (found in the transfers read model, decided on each transfer's stream). Returns those failed."""
    cutoff = (now or timezone.now()) - timedelta(seconds=deadline_s)
    candidates = (
        TransferSummary.objects.filter(status="pending", requested_at__lte=cutoff)
        .order_by("requested_at")
        .values_list("transfer_id", flat=True)[:EXPIRE_BATCH]
    )
    store = EventStore()
    expired = []
    for transfer_id in candidates:
        [requested] = store.read_stream(transfer_id, limit=1)
        with applying("transfer_expiry", requested, "expire"):  # in the request's correlation and trace
            try:
                if handlers.transfer_expire(transfer_id=transfer_id, ctx=context(requested)) is not None:
                    expired.append(transfer_id)
            except ConcurrencyError:  # the process manager kept moving it: the next sweep looks again
                log.info("transfer %s moved while expiring it", transfer_id)
    return expired
