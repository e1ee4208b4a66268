"""Poison events park one (projection, bucket); retry and skip; read-your-writes over HTTP."""

from uuid import uuid4

from django.db import connection

from app.ledger.domain.events import TransferRequested
from app.ledger.models import AccountSummary, TransferSummary
from eventstore.records import bucket_of
from eventstore.store import EventStore
from projections.models import BucketCheckpoint, Skip
from tests.conftest import wait_for
from tests.integration.api.conftest import Api, make_user, open_account

POISON = "ALTER TABLE ledger_transfer ADD CONSTRAINT test_poison CHECK (amount NOT IN (13, 14))"
CURE = "ALTER TABLE ledger_transfer DROP CONSTRAINT IF EXISTS test_poison"


def _transfer(transfer_id, amount: int):
    """A valid transfer request that the read model refuses while the test's constraint stands
    (as a handler bug would); once the constraint is gone, the log holds no poison."""
    event = TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=amount, currency="EUR")
    return EventStore().append(transfer_id, "transfer", [event])


def _parked(transfer_id) -> BucketCheckpoint | None:
    return BucketCheckpoint.objects.filter(projection="transfers", bucket=bucket_of(transfer_id), failed=True).first()


def test_a_poison_event_parks_only_its_bucket_then_retry_and_skip(worker):
    operator = Api(make_user("pam", "operator"))
    with connection.cursor() as cur:
        cur.execute(POISON)
    try:
        first = uuid4()
        _transfer(first, 13)
        parked = wait_for(lambda: _parked(first), what="the bucket to park")
        assert "test_poison" in parked.error and parked.error_position is not None
        # other projections and buckets keep going
        account = open_account(operator, owner="Still Going")
        wait_for(lambda: AccountSummary.objects.filter(account_id=account).exists(), what="other projections")
        listed = operator.get("/api/projections").json()
        transfers = next(p for p in listed if p["name"] == "transfers")
        assert transfers["status"] == "failed" and transfers["error"]["event_id"]
        assert next(p for p in listed if p["name"] == "account_summary")["status"] != "failed"

        # skip: recorded with who and when, the bucket moves on without the event
        skipped = operator.post("/api/projections/transfers/skip").json()["skipped_events"]
        skip = Skip.objects.get(projection="transfers", event_id=skipped[0])
        assert skip.skipped_by.username == "pam" and skip.skipped_at is not None
        wait_for(lambda: not _parked(first), what="the bucket to run again")
        assert not TransferSummary.objects.filter(transfer_id=first).exists()

        # retry after a fix: the constraint goes, the parked event applies
        second = uuid4()
        _transfer(second, 14)
        wait_for(lambda: _parked(second), what="the second event to park")
        with connection.cursor() as cur:
            cur.execute(CURE)
        assert operator.post("/api/projections/transfers/retry").json()["retried_buckets"] >= 1
        wait_for(lambda: TransferSummary.objects.filter(transfer_id=second).exists(), what="the retried event")
    finally:
        with connection.cursor() as cur:
            cur.execute(CURE)


def test_consistent_with_returns_the_write_at_once(worker, settings):
    operator = Api(make_user("cody", "operator"))
    account = open_account(operator, owner="Reader Writer")
    for amount in (10, 20, 30):
        last = operator.post(f"/api/accounts/{account}/deposits", {"amount": amount}).json()
        body = operator.get(f"/api/accounts/{account}", consistent_with=last["position"]).json()
        assert body.get("stale") is False and body["version"] == last["version"], body
    assert body["balance"] == 60


def test_consistent_with_a_position_that_never_arrives_is_stale_after_the_bound(worker, settings):
    settings.CONSISTENCY_TIMEOUT_S = 0.5
    operator = Api(make_user("sam", "operator"))
    account = open_account(operator)
    wait_for(lambda: AccountSummary.objects.filter(account_id=account).exists(), what="the account")
    body = operator.get(f"/api/accounts/{account}", consistent_with=10**12).json()
    assert body["stale"] is True and body["account_id"] == account
