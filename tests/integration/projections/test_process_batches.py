"""A process manager's batch reads a page of the log as a projection's does, but ends once it has
handled `handled_per_batch` events: the events it does not handle cost nothing, the ones it does
cost commands, and a crash redoes at most that many (projections/processes.py)."""

from __future__ import annotations

from uuid import UUID, uuid4

import psycopg

from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections import catchup, processes, status
from projections.models import BucketCheckpoint, ProjectionState
from tests.conftest import worker_database_url


def test_a_batch_ends_after_so_many_handled_events_and_the_next_goes_on_from_there(quiet_worker, monkeypatch):
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


# -- the projections' batch carries a process manager past what it does not handle -------------
def _ctx() -> CommandContext:
    return CommandContext(actor="t")  # a command id of its own each time


def _deposited() -> tuple[UUID, int]:
    """A new account with a deposit, every checkpoint at the head before it: (account, bucket)."""
    status.start_at_head()
    account = handlers.account_open(
        account_id=uuid4(), owner="Cara Carry", currency="EUR", ctx=CommandContext(actor="t")
    )
    handlers.account_deposit(account_id=account.stream_id, amount=5, ctx=CommandContext(actor="t"))
    return account.stream_id, bucket_of(account.stream_id)


def _runs(monkeypatch) -> list[str]:
    """The names of the process managers that run on their own from now on."""
    ran: list[str] = []
    run = processes.run

    def recorded(name: str, bucket: int, **kwargs):
        ran.append(name)
        return run(name, bucket, **kwargs)

    monkeypatch.setattr(processes, "run", recorded)
    return ran


def _position(name: str, bucket: int) -> int:
    return BucketCheckpoint.objects.get(projection=name, bucket=bucket).position


def test_a_deposit_carries_the_transfer_process_without_a_run_of_its_own(quiet_worker, monkeypatch):
    account, bucket = _deposited()
    ran = _runs(monkeypatch)
    outcomes = catchup.catch_up_bucket(bucket)
    assert outcomes["transfer_process"] == "drained"
    assert ran == ["integration_publisher"]  # it publishes deposits: it has work of its own
    head = EventStore().read_stream(account)[-1].position
    assert _position("transfer_process", bucket) == head == _position("account_summary", bucket)


def test_a_transfer_is_the_transfer_processs_own_work(quiet_worker, monkeypatch):
    status.start_at_head()
    a, b = (
        handlers.account_open(account_id=uuid4(), owner=f"Tom {i}", currency="EUR", ctx=_ctx()).stream_id
        for i in range(2)
    )
    handlers.account_deposit(account_id=a, amount=50, ctx=_ctx())
    transfer = handlers.transfer_request(from_account=a, to_account=b, amount=5, ctx=_ctx()).stream_id
    ran = _runs(monkeypatch)
    catchup.catch_up_bucket(bucket_of(transfer))
    assert "transfer_process" in ran
    assert [e.type for e in EventStore().read_stream(a)][-1] == "ledger.TransferDebited"  # it acted


def test_a_process_manager_running_elsewhere_is_not_carried(quiet_worker, monkeypatch):
    _, bucket = _deposited()
    before = _position("transfer_process", bucket)
    with psycopg.connect(worker_database_url(), autocommit=True) as elsewhere:  # its run, in another worker
        elsewhere.execute("SELECT pg_advisory_lock(%s, %s)", [processes.advisory_key("transfer_process"), bucket])
        ran = _runs(monkeypatch)
        outcomes = catchup.catch_up_bucket(bucket)
        assert outcomes["transfer_process"] == "busy" and "transfer_process" in ran
        assert _position("transfer_process", bucket) == before
    assert _position("account_summary", bucket) > before  # the projections went on


def test_a_paused_process_manager_is_not_carried(quiet_worker, monkeypatch):
    _, bucket = _deposited()
    before = _position("transfer_process", bucket)
    ProjectionState.objects.filter(name="transfer_process").update(paused=True)
    try:
        outcomes = catchup.catch_up_bucket(bucket)
    finally:
        ProjectionState.objects.filter(name="transfer_process").update(paused=False)
    assert outcomes["transfer_process"] == "paused"
    assert _position("transfer_process", bucket) == before
