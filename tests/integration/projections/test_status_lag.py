"""The status overview counts lag exactly up to a bound per bucket and estimates beyond it, so
that it answers as fast with a backlog of millions as with none."""

from uuid import uuid4

from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.records import bucket_of
from projections import status


def _ctx() -> CommandContext:
    return CommandContext(actor="test")  # a command id of its own each


def _lag(name: str) -> dict:
    return next(item for item in status.overview() if item["name"] == name)


def test_lag_is_exact_below_the_bound_and_estimated_above_it(quiet_worker, monkeypatch):
    status.start_at_head()
    account = handlers.account_open(account_id=uuid4(), owner="Lagging", currency="EUR", ctx=_ctx()).stream_id
    for _ in range(29):
        handlers.account_deposit(account_id=account, amount=1, ctx=_ctx())

    monkeypatch.setattr(status, "LAG_COUNT_MAX", 100)
    exact = _lag("account_summary")
    assert (exact["lag"], exact["lag_exact"]) == (30, True)
    assert [b["lag"] for b in exact["buckets"] if b["lag"]] == [30]
    assert status.max_lag() == 30

    monkeypatch.setattr(status, "LAG_COUNT_MAX", 10)
    bounded = _lag("account_summary")
    assert bounded["lag_exact"] is False
    assert bounded["lag"] >= 10
    assert [b["bucket"] for b in bounded["buckets"] if b["lag"]] == [bucket_of(account)]
