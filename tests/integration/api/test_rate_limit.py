"""A rate limit per bearer token, and per client address for requests without a valid one,
configurable, answered 429 `rate_limited` with `Retry-After` in the contract's error shape; with
Redis down it lets everything through (and says so in the log)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.test import AsyncClient, Client

from app.api import ratelimit
from tests.integration.api.conftest import make_user


@pytest.fixture
def limits(settings, transactional_db, monkeypatch):
    """Small limits, and one fresh window for the whole test (the clock stands still in it): no
    request of an earlier test counts, and no window ends halfway."""
    settings.API_RATE_LIMIT = 3
    settings.API_ANON_RATE_LIMIT = 2
    settings.API_RATE_WINDOW_S = 3600
    monkeypatch.setattr(ratelimit, "clock", lambda: 7_200_000.0 + 1_800)  # halfway through a window
    ratelimit.forget_all()
    yield settings
    ratelimit.forget_all()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def limited(response) -> None:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"] == "rate_limited" and body["detail"], body
    assert response["Retry-After"] == "1800"  # the rest of the window


def test_each_token_has_its_own_limit(limits):
    client = Client(REMOTE_ADDR="10.0.0.1")
    first, second = make_user("rita", "viewer"), make_user("rob", "viewer")
    for _ in range(3):
        assert client.get("/api/event-types", **bearer(first)).status_code == 200
    limited(client.get("/api/event-types", **bearer(first)))
    assert client.get("/api/event-types", **bearer(second)).status_code == 200  # another token: its own count


def test_commands_count_against_the_token_too(limits):
    token = make_user("olly", "operator")
    client = Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(3):
        client.post("/api/accounts", {"owner": "Rate", "currency": "EUR"}, "application/json", **bearer(token))
    limited(client.post("/api/accounts", {"owner": "Rate", "currency": "EUR"}, "application/json", **bearer(token)))


def test_anonymous_requests_are_limited_per_address(limits):
    here, there = Client(REMOTE_ADDR="10.0.0.3"), Client(REMOTE_ADDR="10.0.0.4")
    assert here.get("/api/events").status_code == 401
    assert here.get("/api/openapi.json").status_code == 200
    limited(here.get("/api/openapi.json"))
    assert there.get("/api/openapi.json").status_code == 200


def test_bad_tokens_count_against_the_address(limits):
    """Guessing tokens from one address: each 401 counts as an anonymous request of that address,
    and once it is over its limit, requests from it wait, whatever token they carry."""
    client = Client(REMOTE_ADDR="10.0.0.5")
    good = make_user("gina", "viewer")
    for i in range(2):
        assert client.get("/api/events", **bearer(f"ef_guess-{i}")).status_code == 401
    limited(client.get("/api/events", **bearer("ef_guess-3")))
    limited(client.get("/api/events", **bearer(good)))
    assert Client(REMOTE_ADDR="10.0.0.6").get("/api/events", **bearer(good)).status_code == 200


def test_the_async_path_holds_the_same_limit(limits):
    token = make_user("asa", "viewer")

    async def run() -> list[int]:
        client = AsyncClient()
        return [(await client.get("/api/event-types", headers={"Authorization": f"Bearer {token}"})).status_code]

    statuses = [asyncio.run(run())[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_zero_turns_a_limit_off(limits):
    limits.API_RATE_LIMIT = 0
    token = make_user("zed", "viewer")
    client = Client(REMOTE_ADDR="10.0.0.7")
    assert all(client.get("/api/event-types", **bearer(token)).status_code == 200 for _ in range(5))


def test_redis_down_lets_requests_through_and_says_so(limits, caplog):
    token = make_user("dora", "viewer")
    client = Client(REMOTE_ADDR="10.0.0.8")
    redis_url, limits.REDIS_URL = limits.REDIS_URL, "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        with caplog.at_level(logging.WARNING, logger="app.api.ratelimit"):
            assert all(client.get("/api/event-types", **bearer(token)).status_code == 200 for _ in range(5))
    finally:
        limits.REDIS_URL = redis_url
    assert "rate limit" in caplog.text.lower()
