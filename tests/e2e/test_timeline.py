"""The Timeline in a real browser: an event appended through the REST API appears at the top of
the open page within 2 s without a reload (the worker's catch-up pushes a hint over the
websocket, the page fetches the rows newer than its first); pausing stops that, resuming
fetches what came meanwhile."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlparse

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from app.core.models import ApiToken
from tests.e2e.conftest import console_user, log_in
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's worker, caught up)


def api(server: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = urlparse(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def operator_token() -> str:
    console_user("otto", "operator")
    _, token = ApiToken.issue(get_user_model().objects.get(username="otto"), name="e2e timeline")
    return token


def open_live_timeline(page) -> None:
    log_in(page, console_user("tess", "viewer"))
    page.goto("/timeline/")
    expect(page.locator("#live-state")).to_have_text("live")  # the websocket is open
    page.evaluate("window.notReloaded = true")


def stream_row(page, stream_id: str):
    return page.locator(f"#timeline-rows tr:has(a[href='/streams/{stream_id}/'])")


@pytest.mark.usefixtures("worker")
def test_an_event_appended_through_the_api_appears_in_the_open_timeline_within_2_s(page, server):
    token = operator_token()
    open_live_timeline(page)

    status, opened = api(server, token, "POST", "/api/accounts", {"owner": "Live Lena", "currency": "EUR"})
    assert status == 201, opened
    answered = time.monotonic()
    row = stream_row(page, opened["account_id"])
    expect(row).to_be_visible(timeout=2000)
    elapsed = time.monotonic() - answered

    assert elapsed < 2.0
    expect(row).to_contain_text("ledger.AccountOpened")
    expect(row).to_contain_text(str(opened["position"]))
    expect(page.locator("#timeline-rows tr").first).to_contain_text(str(opened["position"]))  # at the top
    assert page.evaluate("window.notReloaded") is True
    print(f"API response to row shown: {elapsed * 1000:.0f} ms")


@pytest.mark.usefixtures("worker")
def test_pausing_stops_the_live_feed_and_resuming_fetches_what_came_meanwhile(page, server):
    token = operator_token()
    open_live_timeline(page)
    status, first = api(server, token, "POST", "/api/accounts", {"owner": "Paula Pause", "currency": "EUR"})
    assert status == 201
    rows = stream_row(page, first["account_id"])
    expect(rows).to_have_count(1, timeout=2000)

    page.click("#live-toggle")
    expect(page.locator("#live-toggle")).to_have_text("Resume")
    expect(page.locator("#timeline-state")).to_have_text("paused")
    status, deposit = api(server, token, "POST", f"/api/accounts/{first['account_id']}/deposits", {"amount": 700})
    assert status == 200
    time.sleep(1.5)  # long enough for the hint to arrive and be ignored
    expect(rows).to_have_count(1)  # still only the opening

    page.click("#live-toggle")
    expect(page.locator("#timeline-state")).to_have_text("live")
    expect(rows).to_have_count(2, timeout=2000)
    expect(rows.first).to_contain_text("ledger.FundsDeposited")
    expect(page.locator("#timeline-rows tr").first).to_contain_text(str(deposit["position"]))
    assert page.evaluate("window.notReloaded") is True
