"""A process manager's batch reads a page of the log as a projection's does, but ends once it has
handled `handled_per_batch` events: the events it does not handle cost nothing, the ones it does
cost commands, and a crash redoes at most that many (projections/processes.py)."""

from __future__ import annotations

from uuid import UUID, uuid4

import psycopg
import pytest
from django.db import connection

from app.integration import publisher
from app.integration.events import registry
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
    assert ran == []  # nor the publisher: the batch published the deposit for it (below)
    head = EventStore().read_stream(account)[-1].position
    assert _position("transfer_process", bucket) == head == _position("account_summary", bucket)


# -- the projections' batch handles an `in_batch` manager's events itself (the publisher) ---------
@pytest.fixture(autouse=True)
def _no_deferral_yet(monkeypatch):
    """A deferral another test met would leave the publisher to its own runs (processes.in_batch)."""
    monkeypatch.setattr(processes, "_away", set())


def _published(monkeypatch, fails: Exception | None = None) -> list[str]:
    """The integration event names published from now on (none, and `fails` raised, when given)."""
    sent: list[str] = []

    def publish_all(messages):
        if fails is not None:
            raise fails
        sent.extend(m.event.name for m in messages)

    monkeypatch.setattr(publisher, "publish_all", publish_all)
    return sent


def test_a_deposit_is_published_by_the_projections_batch_with_no_run_of_the_publisher(quiet_worker, monkeypatch):
    account, bucket = _deposited()
    sent = _published(monkeypatch)
    ran = _runs(monkeypatch)
    outcomes = catchup.catch_up_bucket(bucket)
    assert outcomes["integration_publisher"] == "drained" and ran == []
    assert sent == ["ledger.account_opened", "ledger.funds_deposited"]
    head = EventStore().read_stream(account)[-1].position
    assert _position("integration_publisher", bucket) == head == _position("account_summary", bucket)


def test_a_broker_away_leaves_the_publishers_events_to_its_own_run(quiet_worker, monkeypatch):
    account, bucket = _deposited()
    before = _position("integration_publisher", bucket)
    _published(monkeypatch, fails=processes.Deferred("the broker is away"))
    ran = _runs(monkeypatch)
    outcomes = catchup.catch_up_bucket(bucket)
    assert outcomes["integration_publisher"] == "deferred" and ran == ["integration_publisher"]
    assert _position("integration_publisher", bucket) == before  # nothing published, nothing passed
    assert _position("account_summary", bucket) == EventStore().read_stream(account)[-1].position
    # its own runs alone try until one gets through: a broker away must not hold every projections' batch
    sent = _published(monkeypatch)
    handlers.account_deposit(account_id=account, amount=1, ctx=_ctx())
    assert catchup.catch_up_bucket(bucket)["integration_publisher"] == "drained"
    assert ran == ["integration_publisher"] * 2 and len(sent) == 3  # its own run published all three
    handlers.account_deposit(account_id=account, amount=1, ctx=_ctx())
    catchup.catch_up_bucket(bucket)
    assert ran == ["integration_publisher"] * 2 and len(sent) == 4  # and then the batch again


def test_a_translation_that_raises_is_parked_by_the_publishers_own_run(quiet_worker, monkeypatch):
    account, bucket = _deposited()
    _published(monkeypatch)

    def broken(event, store):
        raise KeyError("currency")

    monkeypatch.setitem(registry._translations, "ledger.FundsDeposited", [broken])
    ran = _runs(monkeypatch)
    outcomes = catchup.catch_up_bucket(bucket)
    assert outcomes["integration_publisher"] == "failed" and ran == ["integration_publisher"]
    parked = BucketCheckpoint.objects.get(projection="integration_publisher", bucket=bucket)
    deposit = EventStore().read_stream(account)[-1]
    assert parked.failed and parked.error_event_id == deposit.event_id
    assert _position("account_summary", bucket) == deposit.position  # the projections went on


def test_a_failed_read_in_the_publishers_handling_leaves_the_batch_whole(quiet_worker, monkeypatch):
    account, bucket = _deposited()
    sent = _published(monkeypatch)
    process = processes.process_registry.get("integration_publisher")
    handle = process.handle
    calls = []

    def reads_badly(event):
        calls.append(event)
        if len(calls) == 1:  # in the projections' batch: a statement PostgreSQL refuses
            with connection.cursor() as cur:
                cur.execute("SELECT 1 / 0")
        handle(event)

    monkeypatch.setattr(process, "handle", reads_badly)
    ran = _runs(monkeypatch)
    outcomes = catchup.catch_up_bucket(bucket)
    assert ran == ["integration_publisher"] and outcomes["integration_publisher"] == "drained"
    assert sent == ["ledger.account_opened", "ledger.funds_deposited"]  # once, by its own run
    head = EventStore().read_stream(account)[-1].position
    assert _position("integration_publisher", bucket) == head == _position("account_summary", bucket)


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
