"""The console's numbers, cursors and request ids from a request: ASCII digits within their
column's bound, or ignored (a page that was asked nonsense shows what it would show without it);
cursors that are not ours show the first page and say so; never a 500."""

from __future__ import annotations

import base64
from uuid import UUID, uuid4

import pytest
from django.urls import reverse

from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore.store import EventStore
from tests.integration.console.clients import console_client
from tests.integration.console.test_ledger_views import caught_up

NOT_NUMBERS = ["\u00b2", "\u0661\u0662", "1_000", "99999999999999999999999", "9223372036854775808", "-1"]


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def operator(transactional_db):
    return console_client("olga-numbers", "operator")


@pytest.fixture
def account(transactional_db) -> UUID:
    ctx = CommandContext(actor="numbers-test")
    opened = handlers.account_open(account_id=uuid4(), owner="Nora Numbers", currency="EUR", ctx=ctx).stream_id
    handlers.account_deposit(account_id=opened, amount=5, ctx=ctx)
    caught_up()  # the account pages read the read models
    return opened


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_consistent_with_that_is_not_a_position_waits_for_nothing(operator, account, value):
    for url in (
        reverse("console:accounts"),
        reverse("console:account", args=[account]),
        reverse("console:transfers"),
    ):
        response = operator.get(url, {"consistent_with": value})
        assert response.status_code == 200, (url, value)


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_a_stream_page_given_a_version_or_start_that_is_no_number_shows_the_latest(operator, account, value):
    url = reverse("console:stream", args=[account])
    for param in ("version", "from"):
        response = operator.get(url, {param: value})
        assert response.status_code == 200, (param, value)
        assert "Nora Numbers" in response.content.decode()


@pytest.mark.parametrize("raw", ["\u00b2.1", "\u0661.\u0662", "18446744073709551616.1", "1.9223372036854775808"])
def test_a_log_cursor_that_is_not_ours_shows_the_newest_page(operator, account, raw):
    timeline = operator.get(reverse("console:timeline"), {"before": cursor_of(raw)})
    assert timeline.status_code == 200 and "not valid any more" in timeline.content.decode()
    streams = operator.get(reverse("console:streams"), {"category": "account", "before": cursor_of(raw)})
    assert streams.status_code == 200


@pytest.mark.parametrize("raw", ["\u00b2", "\u0661\u0662", "99999999999", "1_0"])
def test_an_entries_cursor_that_is_not_ours_shows_the_newest_entries(operator, account, raw):
    response = operator.get(reverse("console:account", args=[account]), {"cursor": cursor_of(raw)})
    assert response.status_code == 200


def test_text_postgresql_cannot_store_finds_nothing(operator, account):
    assert operator.get(reverse("console:accounts"), {"owner": "Nora\x00"}).status_code == 200
    assert operator.get(reverse("console:streams"), {"category": "acc\x00ount"}).status_code == 200


def test_a_request_id_the_log_should_not_keep_is_left_out(operator, account):
    """A browser user does not choose the headers a proxy adds: the command goes through, and only a
    request id fit for the log is kept with it."""
    page = reverse("console:account", args=[account])
    action = reverse("console:account_action", args=[account, "deposit"])
    for request_id, kept in (("x" * 500, None), ("bad\x00id", None), ("req-42", "req-42")):
        response = operator.post(
            action, {"command_id": uuid4(), "amount": "1", "reference": ""}, HTTP_X_REQUEST_ID=request_id
        )
        assert response.status_code == 302, response.content[:500]
        assert EventStore().read_stream(account)[-1].metadata.get("request_id") == kept
    assert operator.get(page).status_code == 200
