"""The buckets whose wake-ups waited are caught up together (projections/catchup.py
catch_up_buckets, runner.apply_batches): their first batches share one transaction, one
lock-and-read, one write and one checkpoint move. A bucket that batch does not settle goes on alone,
and what fails in one bucket stays in that bucket."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from django.db import connection

from app.integration import publisher
from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.events import TransferRequested
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections import catchup, flags, processes, runner, status, tasks, wakeups
from projections.models import BucketCheckpoint
from tests.conftest import worker_database_url

LOCKS = runner.CHECKPOINTS  # read with the locks, in their round trip
MOVE = "UPDATE projections_checkpoint c"
POISON = "ALTER TABLE ledger_transfer ADD CONSTRAINT test_together_poison CHECK (amount <> 13)"
CURE = "ALTER TABLE ledger_transfer DROP CONSTRAINT IF EXISTS test_together_poison"


def _ctx() -> CommandContext:
    return CommandContext(actor="t")


@contextmanager
def _statements(with_params: list[tuple[str, Any]] | None = None) -> Iterator[list[str]]:
    """The SQL this connection runs meanwhile (and, into `with_params`, each with its parameters)."""
    seen: list[str] = []

    def spy(execute, sql, params, many, context):
        seen.append(str(sql))
        if with_params is not None:
            with_params.append((str(sql), params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        yield seen


@pytest.fixture(autouse=True)
def _published(monkeypatch) -> list[list[str]]:
    """The integration events each publish sends (a publish per list), and no deferral left over."""
    monkeypatch.setattr(processes, "_away", set())
    sent: list[list[str]] = []
    monkeypatch.setattr(publisher, "publish_all", lambda messages: sent.append([m.event.name for m in messages]))
    return sent


def _deposits(n: int, *, besides: Collection[int] | None = None) -> dict[int, UUID]:
    """Accounts with a deposit each, in `n` different buckets, every checkpoint at the head before
    them (unless they come `besides` those of earlier buckets, whose buckets they avoid)."""
    if besides is None:
        status.start_at_head()
    accounts: dict[int, UUID] = {}
    while len(accounts) < n:
        account = uuid4()
        if bucket_of(account) not in accounts and bucket_of(account) not in (besides or ()):
            handlers.account_open(account_id=account, owner="Tia Together", currency="EUR", ctx=_ctx())
            handlers.account_deposit(account_id=account, amount=5, ctx=_ctx())
            accounts[bucket_of(account)] = account
    return accounts


def _balance(account: UUID) -> int | None:
    with connection.cursor() as cur:
        cur.execute("SELECT balance FROM ledger_account WHERE account_id = %s", [account])
        row = cur.fetchone()
    return row and row[0]


def _position(name: str, bucket: int) -> int:
    return BucketCheckpoint.objects.get(projection=name, bucket=bucket).position


def test_waiting_buckets_share_one_transaction(quiet_worker, _published, monkeypatch):
    accounts = _deposits(4)
    monkeypatch.setattr(processes, "run", lambda name, bucket, **kw: "drained")
    statements: list[tuple[str, Any]] = []
    with _statements(statements):
        results = catchup.catch_up_buckets(sorted(accounts))
    assert set(results) == set(accounts)
    for bucket, outcomes in results.items():
        assert set(outcomes.values()) == {"drained"}, outcomes
        head = EventStore().read_stream(accounts[bucket])[-1].position
        for name in ("account_summary", "account_entries", "transfer_process", "integration_publisher"):
            assert _position(name, bucket) == head
    assert all(_balance(account) == 5 for account in accounts.values())
    # The first lock-and-read and the first checkpoint move are every bucket's, process managers'
    # included. (What the CI's log showed: a stray append into one of these buckets, by another
    # test's leftovers, may send that bucket round once more afterwards, on its own.)
    locks = [params for sql, params in statements if sql == LOCKS]
    moves = [params for sql, params in statements if sql.startswith(MOVE)]
    assert set(locks[0][1]) == set(accounts), "a lock-and-read per bucket"
    assert set(moves[0][1]) == set(accounts), "a checkpoint move per bucket"
    moved = set(zip(moves[0][0], moves[0][1], strict=True))
    assert {("transfer_process", b) for b in accounts} <= moved, "the process managers left the shared batch"
    assert {("integration_publisher", b) for b in accounts} <= moved
    # every bucket's events in the first publish (and those appended meanwhile)
    assert _published[0].count("ledger.account_opened") >= 4 and _published[0].count("ledger.funds_deposited") >= 4


def test_a_failing_event_parks_its_projection_in_its_bucket_only(quiet_worker):
    accounts = _deposits(3)
    transfer_id = uuid4()
    while bucket_of(transfer_id) in accounts:
        transfer_id = uuid4()
    with connection.cursor() as cur:
        cur.execute(POISON)
    try:
        EventStore().append(
            transfer_id,
            "transfer",
            [TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=13, currency="EUR")],
        )
        poisoned = bucket_of(transfer_id)
        results = catchup.catch_up_buckets(sorted([*accounts, poisoned]))
    finally:
        with connection.cursor() as cur:
            cur.execute(CURE)
    assert results[poisoned]["transfers"] == "failed"
    parked = BucketCheckpoint.objects.get(projection="transfers", bucket=poisoned)
    assert parked.failed and "test_together_poison" in parked.error
    for bucket, account in accounts.items():  # the other buckets, whole
        assert not BucketCheckpoint.objects.get(projection="transfers", bucket=bucket).failed
        assert _balance(account) == 5
        assert _position("account_summary", bucket) == EventStore().read_stream(account)[-1].position
    assert _position("account_summary", poisoned) == EventStore().read_stream(transfer_id)[-1].position


def test_a_bucket_held_elsewhere_goes_on_alone_and_is_marked_for_its_holder(quiet_worker):
    accounts = _deposits(3)
    held = sorted(accounts)[1]
    flags.take_dirty(held)
    with psycopg.connect(worker_database_url()) as elsewhere:  # a transaction of another worker's batch
        elsewhere.execute("SELECT pg_advisory_xact_lock(%s, %s)", [runner.lock_key("account_summary"), held])
        results = catchup.catch_up_buckets(sorted(accounts))
        assert results[held]["account_summary"] == "busy"
        assert flags.take_dirty(held), "the holder was not asked to look again"
        assert _balance(accounts[held]) is None
    for bucket, account in accounts.items():
        if bucket != held:
            assert set(results[bucket].values()) == {"drained"} and _balance(account) == 5


def test_the_pending_task_takes_every_waiting_bucket(quiet_worker, monkeypatch):
    monkeypatch.setattr(wakeups, "_fast_wake", lambda bucket: None)  # the flags only, through Celery
    monkeypatch.setattr(wakeups, "send_pending", lambda: None)  # the worker takes no task here
    flags.take_pending(64)
    accounts = _deposits(3)  # each deposit's commit marks its bucket waiting
    results = tasks.catch_up_pending()  # the task's body, in this process
    assert set(accounts) <= set(results)
    assert all(_balance(account) == 5 for account in accounts.values())
    assert flags.take_pending(64) == ([], 0)


def test_a_holder_that_left_before_the_mark_was_made_is_not_waited_for(quiet_worker, monkeypatch):
    """The holder looks for a mark after its commit: one made later would wait for beat's tick.
    So a catch-up that found the bucket busy marks it, then looks once more."""
    [(bucket, account)] = _deposits(1).items()
    flags.take_dirty(bucket)
    catch_up, looks = runner.catch_up, []

    def busy_at_first(bucket: int, **kwargs):
        looks.append(bucket)
        if len(looks) == 1:  # a holder had it, and left before the mark below
            return {"account_summary": "busy"}
        return catch_up(bucket, **kwargs)

    monkeypatch.setattr(runner, "catch_up", busy_at_first)
    catchup.catch_up_bucket(bucket)
    assert _balance(account) == 5
    assert not flags.take_dirty(bucket)


def test_a_bucket_another_catch_up_holds_is_left_to_it_marked(quiet_worker, monkeypatch):
    """Every projection of the bucket busy: another catch-up has it. It is marked for its holder and
    looked at once more, never sent down the one-bucket path (whose process managers would run)."""
    accounts = _deposits(3)
    held = sorted(accounts)[0]
    flags.take_dirty(held)
    ran: list[str] = []
    monkeypatch.setattr(processes, "run", lambda name, bucket, **kw: ran.append(name) or "busy")
    with psycopg.connect(worker_database_url()) as elsewhere, _statements() as seen:
        for projection in ("account_summary", "account_entries", "daily_totals", "transfers"):
            elsewhere.execute("SELECT pg_advisory_xact_lock(%s, %s)", [runner.lock_key(projection), held])
        results = catchup.catch_up_buckets(sorted(accounts))
        assert set(results[held].values()) == {"busy"} and ran == []
        assert flags.take_dirty(held), "the holder was not asked to look again"
    assert sum(sql == LOCKS for sql in seen) == 2  # the batch, and one more look at the held bucket
    for bucket, account in accounts.items():
        if bucket != held:
            assert set(results[bucket].values()) == {"drained"} and _balance(account) == 5


def test_a_bucket_far_behind_is_queued_on_its_own(quiet_worker, monkeypatch):
    """A full batch: the bucket has a backlog, which a task of its own takes (so that a backlog
    spreads over the worker's processes, as one task per bucket did)."""
    accounts = _deposits(2)
    behind, current = sorted(accounts)
    for amount in (1, 2):
        handlers.account_deposit(account_id=accounts[behind], amount=amount, ctx=_ctx())
    monkeypatch.setattr(runner, "BATCH_SIZE", 3)  # `behind` holds 4 events, `current` 2
    queued: list[int] = []
    monkeypatch.setattr(wakeups, "send_catch_up", lambda bucket, countdown=None: queued.append(bucket))
    results = catchup.catch_up_buckets([behind, current])
    assert queued == [behind]
    assert set(results[current].values()) == {"drained"} and _balance(accounts[current]) == 5
    assert results[behind]["account_summary"] == "applied"
    catchup.catch_up_bucket(behind)  # the task it was given
    assert _balance(accounts[behind]) == 8


def test_the_appends_of_the_gathering_moment_join_the_task_without_a_task_of_their_own(
    quiet_worker, monkeypatch, settings
):
    sent: list[str] = []
    monkeypatch.setattr(wakeups, "_fast_wake", lambda bucket: None)  # the flags only, through Celery
    monkeypatch.setattr(wakeups, "send_pending", lambda: sent.append("task"))
    settings.CATCH_UP_GATHER_S = 0.01
    flags.take_pending(64)
    first = _deposits(1)  # its wake-up sends the task
    later: dict[int, UUID] = {}

    def gathering(seconds: float) -> None:
        assert seconds == 0.01
        later.update(_deposits(3, besides=first))  # while the task waits

    monkeypatch.setattr(tasks.time, "sleep", gathering)
    results = tasks.catch_up_pending()
    assert sent == ["task"], "an append during the gathering sent a task of its own"
    assert len(later) == 3 and set(first) | set(later) <= set(results)
    assert all(_balance(account) == 5 for account in [*first.values(), *later.values()])
