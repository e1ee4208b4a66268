"""A small batch of `pipelined` projections sends its writes and the checkpoints' move to
PostgreSQL in one round trip (psycopg's pipeline mode; projections/runner.py apply_batch): a write
that PostgreSQL refuses is only known at the round trip's end, and must still park its own
projection at its own event while the others apply."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import pytest
from django.db import connection

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.events import TransferRequested
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections import runner, status
from projections.base import projection_registry
from projections.models import BucketCheckpoint

POISON = "ALTER TABLE ledger_transfer ADD CONSTRAINT test_pipeline_poison CHECK (amount <> 13)"
CURE = "ALTER TABLE ledger_transfer DROP CONSTRAINT IF EXISTS test_pipeline_poison"
WRITES = ("INSERT INTO ledger_entry", "UPDATE ledger_account", "INSERT INTO ledger_daily_account")


@contextmanager
def _statements() -> Iterator[list[tuple[str, bool]]]:
    """Every statement the catch-up sends meanwhile, and whether it went in pipeline mode."""
    seen: list[tuple[str, bool]] = []

    def spy(execute, sql, params, many, context):
        seen.append((str(sql), connection.connection._pipeline is not None))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        yield seen


@pytest.fixture
def deposit(quiet_worker):
    status.start_at_head()
    account = handlers.account_open(account_id=uuid4(), owner="Pia Pipe", currency="EUR", ctx=CommandContext(actor="t"))
    handlers.account_deposit(account_id=account.stream_id, amount=7, ctx=CommandContext(actor="t"))
    return account.stream_id


def test_a_small_batch_sends_its_writes_and_the_move_together(deposit):
    with _statements() as seen:
        outcomes = runner.catch_up(bucket_of(deposit))
    assert set(outcomes.values()) == {"drained"}
    writes = [(sql, piped) for sql, piped in seen if sql.lstrip().startswith(WRITES)]
    moves = [(sql, piped) for sql, piped in seen if sql.startswith("UPDATE projections_checkpoint c")]
    assert len(writes) >= 3 and moves, seen
    assert all(piped for _, piped in writes + moves), "the writes and the move went one by one"
    with connection.cursor() as cur:
        cur.execute("SELECT balance FROM ledger_account WHERE account_id = %s", [deposit])
        assert cur.fetchone()[0] == 7


def test_without_pipelined_projections_the_writes_go_one_by_one(deposit, monkeypatch):
    for projection in projection_registry.all():
        monkeypatch.setattr(projection, "pipelined", False)
    with _statements() as seen:
        runner.catch_up(bucket_of(deposit))
    writes = [piped for sql, piped in seen if sql.lstrip().startswith(WRITES)]
    assert writes and not any(writes)
    with connection.cursor() as cur:
        cur.execute("SELECT balance FROM ledger_account WHERE account_id = %s", [deposit])
        assert cur.fetchone()[0] == 7


def test_a_write_postgresql_refuses_in_the_round_trip_parks_its_projection_at_its_event(quiet_worker):
    status.start_at_head()
    transfer_id = uuid4()
    with connection.cursor() as cur:
        cur.execute(POISON)
    try:
        event = TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=13, currency="EUR")
        EventStore().append(transfer_id, "transfer", [event])
        bucket = bucket_of(transfer_id)
        outcomes = runner.catch_up(bucket)
        stored = EventStore().read_stream(transfer_id)[0]
    finally:
        with connection.cursor() as cur:
            cur.execute(CURE)
    assert outcomes["transfers"] == "failed"
    parked = BucketCheckpoint.objects.get(projection="transfers", bucket=bucket)
    assert parked.failed and "test_pipeline_poison" in parked.error
    assert parked.error_event_id == stored.event_id
    for name in ("account_summary", "account_entries", "daily_totals"):  # past the event, unharmed
        row = BucketCheckpoint.objects.get(projection=name, bucket=bucket)
        assert outcomes[name] == "drained" and not row.failed
        assert (row.tx_id, row.position) == (stored.checkpoint.tx_id, stored.checkpoint.position)
