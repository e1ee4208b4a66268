"""A bucket far behind is caught up by folding each batch in memory (`rebuild_batch`) instead of
one statement per event: the read models must come out exactly as one-by-one application makes
them, and a batch that dies halfway must leave nothing behind (exactly once)."""

from random import Random
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.db import connection

from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.records import BUCKETS
from projections import metrics, runner, status
from projections.base import projection_registry

TABLES = {  # read-model table -> the column naming one of the test's accounts
    "ledger_account": "account_id",
    "ledger_entry": "account_id",
    "ledger_daily_account": "account_id",
    "ledger_daily_account_currency": "account_id",
    "ledger_transfer": "from_account",
}


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def _backlog(accounts: int = 12, events: int = 40) -> list[UUID]:
    """Accounts of the test's own with deposits, withdrawals (references with a tab, which COPY
    must escape), freezes, and transfers between them carried through every step of the process."""
    rng = Random(16)
    ids = [
        handlers.account_open(account_id=uuid4(), owner=f"Bulk {i}", currency="EUR", ctx=ctx()).stream_id
        for i in range(accounts)
    ]
    for account in ids:
        handlers.account_deposit(account_id=account, amount=10_000, ctx=ctx())
    for n in range(accounts * events):
        account = rng.choice(ids)
        kind = rng.random()
        if kind < 0.5:
            handlers.account_deposit(account_id=account, amount=rng.randint(1, 500), reference=f"d{n}", ctx=ctx())
        elif kind < 0.8:
            handlers.account_withdraw(account_id=account, amount=rng.randint(1, 50), reference=f"w\t{n}", ctx=ctx())
        elif kind < 0.95:
            target = rng.choice([a for a in ids if a != account])
            transfer = handlers.transfer_request(
                from_account=account, to_account=target, amount=rng.randint(1, 50), ctx=ctx()
            ).stream_id
            for step in (
                handlers.transfer_debit,
                handlers.transfer_confirm_debit,
                handlers.transfer_credit,
                handlers.transfer_complete,
                handlers.transfer_settle,
            ):
                step(transfer_id=transfer, ctx=ctx())
        else:
            handlers.account_freeze(account_id=account, ctx=ctx())
            handlers.account_unfreeze(account_id=account, ctx=ctx())
    return ids


def _read_models(accounts: list[UUID]) -> dict[str, list[tuple]]:
    """Every read-model row of the accounts, without generated ids, in a stable order."""
    out = {}
    with connection.cursor() as cur:
        for table, column in TABLES.items():
            cur.execute(f"SELECT * FROM {table} WHERE {column} = ANY(%s)", [accounts])
            names = [d.name for d in cur.description]
            rows = [tuple(v for n, v in zip(names, row, strict=True) if n != "id") for row in cur.fetchall()]
            out[table] = sorted(rows, key=repr)
    return out


def _checkpoints() -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute("SELECT projection, bucket, tx_id, position FROM projections_checkpoint")
        return cur.fetchall()


def _rewind(accounts: list[UUID], baseline: list[tuple[Any, ...]]) -> None:
    """The read models of the accounts gone and every projection's checkpoints back at `baseline`."""
    with connection.cursor() as cur:
        for table, column in TABLES.items():
            cur.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", [accounts])
        cur.execute(
            "UPDATE projections_checkpoint c SET tx_id = b.tx_id, position = b.position "
            "FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[]) AS b(projection, bucket, tx_id, position) "
            "WHERE c.projection = b.projection AND c.bucket = b.bucket",
            [list(col) for col in zip(*baseline, strict=True)],
        )


# Every bucket, not only the accounts': a transfer's stream falls in a bucket of its own, so the
# transfers' read model was left empty whenever none of them shared a bucket with an account.
ALL_BUCKETS = set(range(BUCKETS))


def _catch_up(buckets: set[int]) -> None:
    for bucket in sorted(buckets):
        while (outcomes := set(runner.catch_up(bucket).values())) & {"more", "busy"}:
            assert "busy" not in outcomes, "nothing else catches up while the test does"


def _folded() -> float:
    return sum(metrics.FOLDED.labels(p.name)._value.get() for p in projection_registry.all())


@pytest.fixture
def small_batches(quiet_worker, monkeypatch):
    """Batch sizes small enough that a backlog of a few thousand events is "far behind" in every
    bucket it touches (the constants are the same code path at any size)."""
    monkeypatch.setattr(runner, "BATCH_SIZE", 10)
    monkeypatch.setattr(runner, "BULK_BATCH_SIZE", 60)
    monkeypatch.setattr(runner, "BULK_MIN_EVENTS", 5)


def _reference(monkeypatch, accounts: list[UUID], baseline: list[tuple[Any, ...]]) -> dict[str, list[tuple]]:
    """The read models as one-by-one application makes them (no batch is ever folded)."""
    with monkeypatch.context() as m:
        m.setattr(runner, "BULK_MIN_EVENTS", 10**9)
        before = _folded()
        _catch_up(ALL_BUCKETS)
        assert _folded() == before
    models = _read_models(accounts)
    assert all(models.values()), "every table has rows of the test's accounts"
    _rewind(accounts, baseline)
    assert not any(_read_models(accounts).values())
    return models


def test_a_folded_catch_up_makes_the_same_read_models_as_one_by_one(transactional_db, small_batches, monkeypatch):
    status.start_at_head()
    baseline = _checkpoints()
    accounts = _backlog()
    expected = _reference(monkeypatch, accounts, baseline)

    before = _folded()
    _catch_up(ALL_BUCKETS)
    assert _folded() > before, "the backlog was folded in memory"
    assert _read_models(accounts) == expected


def test_a_folded_batch_that_dies_halfway_leaves_nothing_and_the_retry_applies_it_once(
    transactional_db, small_batches, monkeypatch
):
    status.start_at_head()
    baseline = _checkpoints()
    accounts = _backlog(accounts=8, events=30)
    expected = _reference(monkeypatch, accounts, baseline)

    # The first folded batch's transaction dies after every projection has written its rows,
    # before the checkpoints move (as a lost connection or a killed worker would end it).
    move, before = runner._send_move, _folded()

    def dying_move(cur, moves):
        if _folded() > before:
            raise ConnectionError("the worker died mid-batch")
        move(cur, moves)

    monkeypatch.setattr(runner, "_send_move", dying_move)
    buckets = ALL_BUCKETS
    with pytest.raises(ConnectionError):
        _catch_up(buckets)
    assert _read_models(accounts) != expected, "the catch-up stopped halfway"
    monkeypatch.setattr(runner, "_send_move", move)
    _catch_up(buckets)  # the task again, as its redelivery runs it
    assert _read_models(accounts) == expected


def test_a_fold_that_raises_is_applied_one_by_one_instead(transactional_db, small_batches, monkeypatch):
    status.start_at_head()
    baseline = _checkpoints()
    accounts = _backlog(accounts=6, events=30)
    expected = _reference(monkeypatch, accounts, baseline)

    entries = projection_registry.get("account_entries")
    fold = entries.rebuild_batch

    def writes_then_raises(events, cur, memo):
        fold(events, cur, memo)  # its rows must roll back with the savepoint
        raise RuntimeError("a fold that fails")

    monkeypatch.setattr(entries, "rebuild_batch", writes_then_raises)
    _catch_up(ALL_BUCKETS)
    assert _read_models(accounts) == expected
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM projections_checkpoint WHERE failed")
        assert cur.fetchone()[0] == 0
