"""The transfer process manager's pure parts: the deadline rule, its steps, their context."""

from datetime import UTC, datetime
from uuid import uuid4

from app.ledger.domain.events import (
    TransferCompleted,
    TransferDebitConfirmed,
    TransferFailed,
    TransferRequested,
)
from app.ledger.domain.transfer import Transfer
from app.ledger.process import ACTOR, context
from eventstore.records import RecordedEvent
from eventstore.testing import given
from projections.base import projection_registry
from projections.processes import process_registry

REQUESTED = TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=10, currency="EUR")


def test_a_transfer_past_its_deadline_fails_as_expired_until_its_debit_is_confirmed():
    given(Transfer, REQUESTED).when(lambda t: t.expire()).then(TransferFailed(reason="expired"))
    given(Transfer, REQUESTED, TransferDebitConfirmed()).when(lambda t: t.expire()).then_nothing()
    given(Transfer, REQUESTED, TransferFailed(reason="insufficient_funds")).when(lambda t: t.expire()).then_nothing()
    given(Transfer, REQUESTED, TransferDebitConfirmed(), TransferCompleted()).when(lambda t: t.expire()).then_nothing()


def test_the_process_manager_follows_every_step_and_is_never_a_projection():
    process = process_registry.get("transfer_process")
    assert process.kind == "process"
    assert process.event_types == [
        "ledger.TransferCompleted",
        "ledger.TransferCredited",
        "ledger.TransferDebitConfirmed",
        "ledger.TransferDebited",
        "ledger.TransferFailed",
        "ledger.TransferRefunded",
        "ledger.TransferRequested",
    ]
    assert process.name not in projection_registry  # so rebuilds, resets and verification never see it


def test_a_step_is_caused_by_its_event_in_the_transfers_correlation():
    correlation = uuid4()
    event = RecordedEvent(
        position=7,
        tx_id=700,
        stream_id=uuid4(),
        category="transfer",
        version=1,
        event_id=uuid4(),
        type="ledger.TransferRequested",
        schema_version=1,
        data={},
        metadata={"correlation_id": str(correlation), "actor": "olga"},
        recorded_at=datetime.now(UTC),
    )
    ctx = context(event)
    assert (ctx.actor, ctx.correlation_id, ctx.causation_id) == (ACTOR, correlation, event.event_id)
    assert ctx.command_id == event.event_id  # the step's ids derive from it: a redelivery appends the same ids
    assert ctx.metadata("Step")["correlation_id"] == str(correlation)
