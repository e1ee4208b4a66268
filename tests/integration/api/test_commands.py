"""The command API against docs/api.md: shapes, status codes, every row of the error table, roles."""

import json
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from django.db import connection
from django.utils import timezone

from app.core.models import ProcessedCommand
from app.ledger.domain.account import Account
from eventstore.repository import Repository
from eventstore.store import EventStore
from tests.integration.api.conftest import open_account

COMMANDS = [
    ("/api/accounts", {"owner": "Bo", "currency": "EUR"}),
    ("/api/accounts/{id}/deposits", {"amount": 1}),
    ("/api/accounts/{id}/withdrawals", {"amount": 1}),
    ("/api/accounts/{id}/freeze", {"reason": "check"}),
    ("/api/accounts/{id}/unfreeze", {}),
    ("/api/accounts/{id}/close", {}),
    ("/api/transfers", {"from_account": "{id}", "to_account": "{other}", "amount": 1}),
]


def test_open_deposit_withdraw_and_their_responses(operator):
    response = operator.post("/api/accounts", {"owner": "Ann", "currency": "EUR", "overdraft_limit": 100})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"account_id", "version", "position"} and body["version"] == 1
    account = body["account_id"]
    deposit = operator.post(f"/api/accounts/{account}/deposits", {"amount": 500, "reference": "salary"})
    assert deposit.status_code == 200 and deposit.json()["version"] == 2
    assert deposit["ETag"] == '"2"'
    assert deposit.json()["position"] > body["position"]
    withdraw = operator.post(f"/api/accounts/{account}/withdrawals", {"amount": 550})
    assert withdraw.status_code == 200 and withdraw.json()["version"] == 3
    state = operator.get(f"/api/aggregates/account/{account}/state").json()
    assert state == {
        "version": 3,
        "state": {
            "owner": "Ann",
            "currency": "EUR",
            "overdraft_limit": 100,
            "balance": -50,
            "status": "open",
            "in_flight": [],
            "forgotten": False,
        },
    }


def test_freeze_unfreeze_close_without_a_body(operator):
    account = open_account(operator)
    assert operator.post(f"/api/accounts/{account}/freeze", raw=b"", content_type="").status_code == 200
    assert operator.post(f"/api/accounts/{account}/freeze", {"reason": "again"}).json()["version"] == 2  # no-op
    assert operator.post(f"/api/accounts/{account}/unfreeze").json()["version"] == 3
    closed = operator.post(f"/api/accounts/{account}/close", {"reason": "done"})
    assert closed.status_code == 200 and closed.json()["version"] == 4


def test_transfer_request_is_accepted(operator):
    a, b = open_account(operator), open_account(operator, owner="Bo")
    operator.post(f"/api/accounts/{a}/deposits", {"amount": 10})
    response = operator.post("/api/transfers", {"from_account": a, "to_account": b, "amount": 5})
    assert response.status_code == 202
    assert set(response.json()) == {"transfer_id", "position"}
    transfer = operator.get(f"/api/aggregates/transfer/{response.json()['transfer_id']}/state").json()
    assert transfer["state"]["status"] == "pending" and transfer["state"]["amount"] == 5


# -- the error table ---------------------------------------------------------------------------
def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == code and isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.content.decode()
    return body


def test_400_malformed_json(operator):
    error(operator.post("/api/accounts", raw=b'{"owner": "Ann",'), 400, "malformed_json")


def test_413_body_over_the_limit(operator, settings):
    settings.API_MAX_BODY_BYTES = 1024
    error(operator.post("/api/accounts", {"owner": "x" * 2000, "currency": "EUR"}), 413, "payload_too_large")


def test_415_not_json(operator):
    response = operator.post(
        "/api/accounts", raw=b"owner=Ann&currency=EUR", content_type="application/x-www-form-urlencoded"
    )
    error(response, 415, "unsupported_media_type")


def test_401_without_or_with_a_bad_token(anonymous, operator):
    error(anonymous.post("/api/accounts", {"owner": "A", "currency": "EUR"}), 401, "unauthorized")
    error(anonymous.get("/api/events"), 401, "unauthorized")
    operator.token = "ef_not-a-real-token"
    response = operator.post("/api/accounts", {"owner": "A", "currency": "EUR"})
    error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"


def test_404_unknown_account_stream_and_category(operator):
    missing = uuid4()
    error(operator.post(f"/api/accounts/{missing}/deposits", {"amount": 1}), 404, "not_found")
    other = open_account(operator)
    error(
        operator.post("/api/transfers", {"from_account": other, "to_account": str(missing), "amount": 1}),
        404,
        "not_found",
    )
    error(operator.get(f"/api/streams/{missing}/events"), 404, "not_found")
    error(operator.get(f"/api/aggregates/planet/{missing}/state"), 404, "not_found")
    error(operator.get(f"/api/aggregates/account/{missing}/state"), 404, "not_found")


def test_409_if_match_must_be_the_current_version(operator):
    account = open_account(operator)
    ok = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, if_match='"1"')
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, if_match='"1"')
    body = error(stale, 409, "concurrency_conflict")
    assert body["version"] == 2 and stale["ETag"] == '"2"'
    assert EventStore().stream_version(account_id := __import__("uuid").UUID(account)) == 2, account_id


def test_409_idempotency_key_reused_with_another_body(operator):
    account = open_account(operator)
    first = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, idempotency_key="k-1")
    assert first.status_code == 200
    again = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, idempotency_key="k-1")
    assert again.json() == first.json()
    error(
        operator.post(f"/api/accounts/{account}/deposits", {"amount": 6}, idempotency_key="k-1"),
        409,
        "idempotency_key_reused",
    )
    assert EventStore().stream_version(__import__("uuid").UUID(account)) == 2


def test_a_key_used_again_after_its_24_hours_gets_the_first_result(operator):
    """The record is gone, but the event ids (and a new account's id) derive from the key: the
    command finds its events in the log and answers with them, appending nothing twice."""
    opened = operator.post("/api/accounts", {"owner": "Kay", "currency": "EUR"}, idempotency_key="open-1")
    account = opened.json()["account_id"]
    first = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, idempotency_key="k-old")
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 7})  # the stream moves on
    ProcessedCommand.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, idempotency_key="k-old")
    assert again.status_code == 200 and again.json() == first.json()
    reopened = operator.post("/api/accounts", {"owner": "Kay", "currency": "EUR"}, idempotency_key="open-1")
    assert reopened.status_code == 201 and reopened.json() == opened.json()
    events = EventStore().read_stream(UUID(account))
    assert [e.type for e in events] == ["ledger.AccountOpened", "ledger.FundsDeposited", "ledger.FundsDeposited"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"owner": "", "currency": "EUR"}, "owner"),
        ({"owner": "A", "currency": "euro"}, "currency"),
        ({"owner": "A", "currency": "EUR", "overdraft_limit": -1}, "overdraft_limit"),
        ({"owner": "A", "currency": "EUR", "surprise": 1}, "surprise"),
        ({"currency": "EUR"}, "owner"),
    ],
)
def test_422_validation_error_names_the_field(operator, body, field):
    response = error(operator.post("/api/accounts", body), 422, "validation_error")
    assert field in response["fields"], response


@pytest.mark.parametrize("amount", [0, -5, 2**63, "ten", 1.5])
def test_422_amounts_are_positive_64_bit_integers(operator, amount):
    account = open_account(operator)
    body = error(operator.post(f"/api/accounts/{account}/deposits", {"amount": amount}), 422, "validation_error")
    assert "amount" in body["fields"]


def test_422_business_rules(operator):
    a = open_account(operator)
    error(operator.post(f"/api/accounts/{a}/withdrawals", {"amount": 1}), 422, "insufficient_funds")
    operator.post(f"/api/accounts/{a}/deposits", {"amount": 10})
    error(operator.post(f"/api/accounts/{a}/close"), 422, "balance_not_zero")
    operator.post(f"/api/accounts/{a}/freeze")
    error(operator.post(f"/api/accounts/{a}/withdrawals", {"amount": 1}), 422, "account_frozen")
    assert operator.post(f"/api/accounts/{a}/deposits", {"amount": 1}).status_code == 200  # frozen takes deposits
    usd = open_account(operator, currency="USD")
    error(
        operator.post("/api/transfers", {"from_account": a, "to_account": usd, "amount": 1}), 422, "currency_mismatch"
    )
    error(operator.post("/api/transfers", {"from_account": a, "to_account": a, "amount": 1}), 422, "same_account")
    empty = open_account(operator)
    operator.post(f"/api/accounts/{empty}/close")
    error(operator.post(f"/api/accounts/{empty}/deposits", {"amount": 1}), 422, "account_closed")
    error(operator.post("/api/transfers", {"from_account": a, "to_account": empty, "amount": 1}), 422, "account_closed")


def test_422_transfers_pending(operator):
    account = open_account(operator)
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 10})
    repo = Repository(Account, EventStore())
    loaded = repo.load(__import__("uuid").UUID(account))
    loaded.debit_for_transfer(uuid4(), 10)  # as the transfer process manager does
    repo.save(loaded)
    error(operator.post(f"/api/accounts/{account}/close"), 422, "transfers_pending")


# -- roles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@pytest.mark.parametrize(("path", "body"), COMMANDS)
def test_each_role_against_each_command(request, operator, role, path, body):
    api = request.getfixturevalue(role)
    account, other = open_account(operator), open_account(operator, owner="Bo")
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 5})
    text = json.dumps(body).replace("{id}", account).replace("{other}", other)
    response = api.post(path.replace("{id}", account), json.loads(text))
    if role == "viewer":
        assert error(response, 403, "forbidden")["detail"] == "this needs the operator role; yours is viewer"
    else:
        assert response.status_code in (200, 201, 202) or response.json()["error"] == "balance_not_zero", (
            response.content
        )


def test_viewers_read(viewer, operator):
    before = {t["name"]: t["count"] for t in viewer.get("/api/event-types").json()}
    account = open_account(operator)
    assert viewer.get(f"/api/streams/{account}/events").status_code == 200
    catalog = {t["name"]: t for t in viewer.get("/api/event-types").json()}
    opened = catalog["ledger.AccountOpened"]
    assert opened["count_exact"] and opened["count"] == before["ledger.AccountOpened"] + 1  # a small log: exact


def test_metadata_on_every_event(operator):
    account = open_account(operator)
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, x_request_id="req-7")
    events = operator.get(f"/api/streams/{account}/events").json()["items"]
    for event in events:
        assert {"correlation_id", "causation_id", "actor", "command_id", "command"} <= set(event["metadata"])
        assert event["metadata"]["actor"] == "olga"
    assert events[1]["metadata"]["request_id"] == "req-7"
    assert events[0]["data"]["owner"] == "Ann Example"


def test_the_owner_never_reaches_the_events_table_in_plain(operator):
    open_account(operator, owner="Unmistakable Q. Plainname")
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM eventstore_event WHERE data::text LIKE '%Plainname%'")
        assert cur.fetchone()[0] == 0


def test_openapi_lists_every_status_code(anonymous):
    spec = anonymous.client.get("/api/openapi.json").json()
    deposit = spec["paths"]["/api/accounts/{account_id}/deposits"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "413", "415", "422"} <= set(deposit)
    assert anonymous.client.get("/api/docs").status_code == 200


def test_503_backpressure_when_projections_are_too_far_behind(operator, settings):
    from projections import flags

    account = open_account(operator)
    flags.publish_max_lag(settings.BACKPRESSURE_MAX_LAG + 1)  # as the beat task measures it
    try:
        response = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5})
        error(response, 503, "backpressure")
        assert response["Retry-After"] == str(settings.BACKPRESSURE_RETRY_AFTER_S)
        assert EventStore().stream_version(__import__("uuid").UUID(account)) == 1  # nothing appended
    finally:
        flags.publish_max_lag(0)
    assert operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}).status_code == 200


def test_the_docs_page_uses_local_assets(anonymous):
    page = anonymous.client.get("/api/docs")
    assert page.status_code == 200
    assert b"cdn." not in page.content and b"/static/ninja/swagger-ui" in page.content
