"""A process manager's batch reads a page of the log as a projection's does, but ends once it has
handled `handled_per_batch` events: the events it does not handle cost nothing, the ones it does
cost commands, and a crash redoes at most that many (projections/processes.py)."""

from __future__ import annotations

from uuid import uuid4

from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections import processes, status
from projections.models import BucketCheckpoint


def test_a_batch_ends_after_so_many_handled_events_and_the_next_goes_on_from_there(transactional_db, monkeypatch):
    process = processes.process_registry.get("transfer_process")
    seen = []
    monkeypatch.setattr(process, "handlers", {"ledger.FundsDeposited": "counted"})
    monkeypatch.setattr(process, "handle", seen.append)
    monkeypatch.setattr(process, "handled_per_batch", 3)
    status.start_at_head()
    account = handlers.account_open(
        account_id=uuid4(), owner="Bea Batch", currency="EUR", ctx=CommandContext(actor="t")
    )
    for amount in range(1, 8):
        handlers.account_deposit(account_id=account.stream_id, amount=amount, ctx=CommandContext(actor="t"))
    bucket = bucket_of(account.stream_id)
    stream = EventStore().read_stream(account.stream_id)  # opened, then seven deposits

    assert processes._run_batch(process, bucket) == "applied"
    assert [e.event_id for e in seen] == [e.event_id for e in stream[1:4]]
    row = BucketCheckpoint.objects.get(projection="transfer_process", bucket=bucket)
    assert row.position == stream[3].position  # right after the third handled event

    assert processes.run("transfer_process", bucket) == "drained"
    assert [e.event_id for e in seen] == [e.event_id for e in stream[1:]]  # each once, in order
