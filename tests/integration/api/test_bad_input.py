"""Bad input never reaches the database and never answers 5xx: every number in a request is ASCII
digits within its column's bound, every text one PostgreSQL can store, every header kept in the
log bounded; anything else is a 4xx in the contract's error shape, naming what was wrong."""

from __future__ import annotations

import base64
import json
from uuid import UUID, uuid4

import pytest

from eventstore.store import EventStore
from tests.integration.api.conftest import open_account
from tests.integration.api.test_read_models import catch_up_all

NOT_NUMBERS = ["\u00b2", "\u0661\u0662", "1_000", " 7", "+7", "7.0", "99999999999999999999"]


def refused(response, status: int = 422, code: str = "validation_error", field: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == code and body["detail"], body
    if field is not None:
        assert field in body["fields"], body
    return body


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- numbers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [*NOT_NUMBERS, "2147483648"])
def test_if_match_is_a_version_in_ascii_digits(operator, value):
    account = open_account(operator)
    response = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, if_match=f'"{value}"')
    refused(response, field="If-Match")
    assert EventStore().stream_version(UUID(account)) == 1


@pytest.mark.parametrize("value", [*NOT_NUMBERS, "9223372036854775808"])
def test_consistent_with_is_a_position_in_ascii_digits(operator, viewer, value):
    account = open_account(operator)
    transfer = uuid4()
    for path in ("/api/accounts", f"/api/accounts/{account}", f"/api/accounts/{account}/entries"):
        refused(viewer.get(path, consistent_with=value), field="consistent_with")
    refused(viewer.get(f"/api/transfers/{transfer}", consistent_with=value), field="consistent_with")


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/events", "limit"),
        ("/api/accounts", "limit"),
        ("/api/streams/{id}/events", "from_version"),
        ("/api/streams/{id}/events", "limit"),
        ("/api/aggregates/account/{id}/state", "version"),
    ],
)
@pytest.mark.parametrize("value", ["\u00b2", "1_0", "2147483648"])
def test_other_numbers_in_a_query_are_ascii_digits_and_bounded(operator, viewer, path, param, value):
    account = open_account(operator)
    refused(viewer.get(path.replace("{id}", account), **{param: value}), field=param)


def test_a_reset_position_past_bigint_is_refused(operator):
    refused(operator.post("/api/projections/transfers/reset", {"to": 2**63}), field="to")


# -- cursors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw", ["\u00b2.1", "1.\u00b2", "\u0661.\u0662", "18446744073709551616.1", "1.9223372036854775808"]
)
def test_a_log_cursor_that_decodes_to_no_checkpoint_is_422(viewer, raw):
    refused(viewer.get("/api/events", after=cursor_of(raw)), field="after")


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661\u0662", "99999999999", "1_0"])
def test_an_entries_cursor_that_decodes_to_no_version_is_422(operator, viewer, raw):
    account = open_account(operator)
    catch_up_all()  # the account is in the read model: the cursor is what is wrong
    refused(viewer.get(f"/api/accounts/{account}/entries", cursor=cursor_of(raw)), field="cursor")


def test_an_accounts_cursor_that_is_not_ours_is_422(viewer):
    for raw in ("2026-01-01T00:00:00+00:00|not-a-uuid", "\u00b2|" + str(uuid4()), "\x00"):
        refused(viewer.get("/api/accounts", cursor=cursor_of(raw)), field="cursor")


# -- text PostgreSQL cannot store ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/events", "category"),
        ("/api/events", "type"),
        ("/api/events", "correlation_id"),
        ("/api/accounts", "owner"),
    ],
)
def test_a_nul_in_a_query_parameter_is_422_naming_it(viewer, path, param):
    refused(viewer.get(path, **{param: "\x006"}), field=param)


def test_a_raw_nul_in_the_query_string_is_422(viewer):
    response = viewer.client.get("/api/events?category=%006", HTTP_AUTHORIZATION=f"Bearer {viewer.token}")
    refused(response, field="category")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/accounts", '{"owner": "Ann\\u0000", "currency": "EUR"}', "owner"),
        ("/api/accounts", '{"owner": "Ann\\ud800", "currency": "EUR"}', "owner"),
        ("/api/accounts", '{"owner": "0", "currency": "AAA"}', "currency"),
        ("/api/accounts", '{"owner": "Ann", "currency": "XTS"}', "currency"),
        ("/api/accounts/{id}/deposits", '{"amount": 5, "reference": "\\u0000"}', "reference"),
        ("/api/accounts/{id}/withdrawals", '{"amount": 5, "reference": "\\udc00x"}', "reference"),
        ("/api/accounts/{id}/freeze", '{"reason": "a\\u0000b"}', "reason"),
        ("/api/accounts/{id}/deposits", '{"amount": "\u0661\u0662"}', "amount"),
        ("/api/accounts/{id}/deposits", '{"amount": "1_000"}', "amount"),
    ],
)
def test_a_body_field_that_cannot_be_stored_is_422_naming_it(operator, path, body, field):
    account = open_account(operator)
    before = EventStore().head()
    refused(operator.post(path.replace("{id}", account), raw=body.encode()), field=field)
    assert EventStore().head() == before  # nothing appended


def test_an_unpaired_surrogate_in_a_field_name_is_422(operator):
    refused(operator.post("/api/accounts", raw=b'{"owner": "A", "currency": "EUR", "\\ud800": 1}'))


# -- headers kept in the log -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["x" * 129, "has space", "tab\there", "nul\x00", "é"])
def test_x_request_id_is_bounded_before_it_is_stored(operator, value):
    account = open_account(operator)
    response = operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, x_request_id=value)
    refused(response, field="X-Request-ID")
    assert EventStore().stream_version(UUID(account)) == 1


def test_a_good_request_id_is_kept(operator):
    account = open_account(operator)
    value = "req-" + "A1._:/+=@~" + "x" * 100
    operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, x_request_id=value)
    assert EventStore().read_stream(UUID(account))[-1].metadata["request_id"] == value


@pytest.mark.parametrize("value", ["nul\x00key", "x" * 256, "line\nbreak"])
def test_an_idempotency_key_is_printable_and_at_most_255_characters(operator, value):
    account = open_account(operator)
    refused(operator.post(f"/api/accounts/{account}/deposits", {"amount": 5}, idempotency_key=value))
    assert EventStore().stream_version(UUID(account)) == 1


# -- the role before the body ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [b'{"owner": ', b'{"owner": 5}', b'{"owner": "A\\u0000", "currency": "EUR"}', json.dumps({"x": 1}).encode()],
)
def test_a_viewer_posting_anything_is_403_before_the_body_is_read(viewer, raw):
    refused(viewer.post("/api/accounts", raw=raw), 403, "forbidden")
    refused(viewer.post(f"/api/accounts/{uuid4()}/deposits", raw=raw), 403, "forbidden")
    refused(viewer.post("/api/projections/transfers/reset", raw=raw), 403, "forbidden")
    refused(viewer.post("/api/transfers", raw=raw), 403, "forbidden")


def test_unknown_query_parameters_are_refused_by_name(viewer):
    typo = viewer.get("/api/accounts", stauts="frozen")
    assert typo.status_code == 422 and typo.json()["fields"] == {"stauts": ["not a query parameter of this operation"]}
    assert viewer.get("/api/accounts", status="frozen").status_code == 200
    assert viewer.get("/api/event-types", page="2").status_code == 422
    assert viewer.get("/api/events", limit="5").status_code == 200
