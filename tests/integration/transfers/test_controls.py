"""Operating the process manager through the projections API: a step that raises parks its
bucket, like a projection's poison event, until retried; it is never reset or rebuilt."""

from uuid import UUID, uuid4

from psycopg import sql

from app.ledger.models import TransferSummary
from eventstore.records import bucket_of
from projections.models import BucketCheckpoint
from tests.conftest import owner_cursor, wait_for
from tests.integration.transfers.conftest import PROCESS, events, open_account, request, types, wait_finished

# A credit refused by the database while the test's trigger stands (as a bug in a step would be);
# once the trigger is gone, the log holds no poison.
REFUSE = sql.SQL(
    "CREATE FUNCTION test_refuse_credit() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'test: credits to % refused', NEW.stream_id; END $$; "
    "CREATE TRIGGER test_refuse_credit BEFORE INSERT ON eventstore_event FOR EACH ROW "
    "WHEN (NEW.stream_id = {target} AND NEW.event_type = 'ledger.TransferCredited') "
    "EXECUTE FUNCTION test_refuse_credit()"
)
CURE = "DROP TRIGGER IF EXISTS test_refuse_credit ON eventstore_event; DROP FUNCTION IF EXISTS test_refuse_credit()"


def _elsewhere(parked: UUID) -> UUID:
    """An id whose bucket is not the parked one."""
    while bucket_of(found := uuid4()) == bucket_of(parked):
        pass
    return found


def _parked(bucket: int) -> BucketCheckpoint | None:
    return BucketCheckpoint.objects.filter(projection=PROCESS, bucket=bucket, failed=True).first()


def test_a_failing_step_parks_its_bucket_until_retried(worker, operator):
    source, target = open_account(100), open_account()
    with owner_cursor() as cur:  # a trigger on the log: the owner's to make
        cur.execute(REFUSE.format(target=sql.Literal(str(target))).as_string(None))
    try:
        stuck = request(source, target, 30)
        parked = wait_for(lambda: _parked(bucket_of(stuck)), what="the bucket to park")
        confirmed = events(stuck)[-1]
        assert confirmed.type == "ledger.TransferDebitConfirmed" and parked.error_event_id == confirmed.event_id
        assert "psycopg.errors.RaiseException (SQLSTATE P0001)" in parked.error  # the message is not recorded
        listed = {p["name"]: p for p in operator.get("/api/projections").json()}
        assert listed[PROCESS]["status"] == "failed"
        assert listed[PROCESS]["error"]["event_id"] == str(confirmed.event_id)

        # transfers in other buckets go on
        payer = open_account(10, account_id=_elsewhere(stuck))
        payee = open_account(account_id=_elsewhere(stuck))
        assert wait_finished(request(payer, payee, 10, transfer_id=_elsewhere(stuck))).status == "completed"
        assert TransferSummary.objects.get(transfer_id=stuck).status == "pending"
    finally:
        with owner_cursor() as cur:
            cur.execute(CURE)
    assert operator.post(f"/api/projections/{PROCESS}/retry").json() == {"name": PROCESS, "retried_buckets": 1}
    assert wait_finished(stuck).status == "completed"
    assert types(events(target, stuck)) == ["TransferCredited"]


def test_a_process_manager_is_listed_but_never_reset_or_rebuilt(operator):
    listed = {p["name"]: p for p in operator.get("/api/projections").json()}
    assert listed[PROCESS]["kind"] == "process"
    for action, body in (("reset", {"to": 0}), ("rebuild", None)):
        response = operator.post(f"/api/projections/{PROCESS}/{action}", body)
        assert response.status_code == 409 and response.json()["error"] == "not_rebuildable", action
