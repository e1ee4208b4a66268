"""Concurrent commands through HTTP against a real PostgreSQL."""

import json
import threading
from uuid import UUID

from django.db import connections

from eventstore.store import EventStore
from tests.integration.api.conftest import Api, open_account


def _threads(n: int, work) -> list:
    barrier, results = threading.Barrier(n), [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_eight_concurrent_withdrawals_never_overdraw(operator):
    account = open_account(operator)
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 500})
    responses = _threads(8, lambda i: Api(operator.token).post(f"/api/accounts/{account}/withdrawals", {"amount": 100}))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert 1 <= len(ok) <= 5, "never more than the funds allow"
    assert all(r.status_code in (409, 422) for r in refused), [r.content for r in refused]
    if not any(r.status_code == 409 for r in refused):
        assert len(ok) == 5
    events = EventStore().read_stream(UUID(account))
    withdrawals = [e for e in events if e.type == "ledger.FundsWithdrawn"]
    assert len(withdrawals) == len(ok)
    assert sorted(r.json()["version"] for r in ok) == [e.version for e in withdrawals]
    assert sorted(r.json()["position"] for r in ok) == sorted(e.position for e in withdrawals)


def test_the_same_keyed_request_five_times_at_once_appends_once(operator):
    account = open_account(operator)
    responses = _threads(
        5,
        lambda i: Api(operator.token).post(f"/api/accounts/{account}/deposits", {"amount": 7}, idempotency_key="once"),
    )
    assert {r.status_code for r in responses} == {200}
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    deposits = [e for e in EventStore().read_stream(UUID(account)) if e.type == "ledger.FundsDeposited"]
    assert len(deposits) == 1
