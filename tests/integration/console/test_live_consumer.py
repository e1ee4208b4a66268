"""The live socket through the real routing (Origin check, session auth) and the real channel
layer (channels_redis): who may connect, which topics it joins, and that push.hint reaches it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from app.console import push
from app.console.routing import websocket_application

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_fn())


@pytest.fixture
def session_cookie(transactional_db) -> bytes:
    """A logged-in console session (committed: the consumer reads it from another thread)."""
    user = get_user_model().objects.create_user("lena", password="a-long-test-password")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(query: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(websocket_application, f"/ws/live/?{query}", headers=list(headers))


def test_anonymous_sockets_are_refused(transactional_db):
    async def scenario() -> bool:
        ws = communicator("topics=events", ORIGIN)
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert run(scenario) is False


def test_a_foreign_origin_is_refused_even_with_a_session(session_cookie):
    async def scenario() -> bool:
        ws = communicator("topics=events", (b"origin", b"https://evil.example"), (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert run(scenario) is False


def test_a_logged_in_page_receives_a_hint_sent_through_the_channel_layer(session_cookie):
    stream = uuid.uuid4()

    async def scenario() -> list[dict]:
        ws = communicator(f"topics=events,stream:{stream}", ORIGIN, (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        assert connected
        await asyncio.to_thread(push.hint, "events")  # from another thread, as a worker would
        await asyncio.to_thread(push.hint, f"stream:{stream}")
        received = [await ws.receive_json_from(timeout=3), await ws.receive_json_from(timeout=3)]
        await ws.disconnect()
        return received

    received = run(scenario)
    assert sorted(m["topic"] for m in received) == sorted(["events", f"stream:{stream}"])
    assert all(set(m) == {"topic"} for m in received)  # a hint, never data


def test_a_socket_counts_its_streams_as_watched_while_it_is_open(session_cookie):
    """Stream hints go only to streams some page watches (push.py): the socket says which."""
    stream = f"stream:{uuid.uuid4()}"

    async def scenario() -> tuple[list[str], list[str]]:
        ws = communicator(f"topics=events,{stream}", ORIGIN, (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        assert connected
        while_open = push.watched([stream, "events"])
        await ws.disconnect()
        return while_open, push.watched([stream])

    while_open, after = run(scenario)
    assert while_open == [stream] and after == []


def test_unknown_topics_are_ignored_and_other_topics_are_not_heard(session_cookie):
    async def scenario() -> tuple[bool, list[dict]]:
        ws = communicator("topics=accounts,secrets,stream:not-a-uuid,../../x", ORIGIN, (b"cookie", session_cookie))
        connected, _ = await ws.connect()
        await asyncio.to_thread(push.hint, "transfers")  # not subscribed
        await asyncio.to_thread(push.hint, "accounts")
        received = [await ws.receive_json_from(timeout=3)]
        nothing_else = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return connected and nothing_else, received

    ok, received = run(scenario)
    assert ok
    assert received == [{"topic": "accounts"}]


def test_topics_are_parsed_against_the_whitelist():
    from app.console.consumers import MAX_TOPICS, topics_from

    stream = uuid.uuid4()
    assert topics_from(f"topics=events,%20Projections,stream:{stream},nope,events".encode()) == [
        "events",
        "projections",
        f"stream:{stream}",
    ]
    many = ",".join(f"stream:{uuid.uuid4()}" for _ in range(30))
    assert len(topics_from(f"topics={many}".encode())) == MAX_TOPICS
    assert topics_from(b"") == []
