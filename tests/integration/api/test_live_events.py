"""GET /api/events/live, the log as server-sent events, through a real uvicorn over real HTTP: a
client cut off mid-stream while events are appended resumes from its cursor and ends with exactly
the log; filters; auth; bad cursors; the bound on streams; a subscription's long-polling fetch."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.conf import settings

from app.stack import WEB_GRACEFUL_SHUTDOWN_S, web_command
from tests.conftest import wait_for, worker_database_url
from tests.integration.api.conftest import make_user

ROOT = Path(__file__).resolve().parents[3]
MAX_STREAMS = 3
HEARTBEAT_S = 1
QUIET = "nothing-writes-here"  # a category without events: its streams are caught up at once


def start_server(log: Path, cmd: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    """uvicorn (as `make run` starts it, or `cmd`) on the test database, with a one-second
    keep-alive and at most three streams; (the process, its port) once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX,
        LIVE_MAX_STREAMS=str(MAX_STREAMS),
        LIVE_HEARTBEAT_S=str(HEARTBEAT_S),
        SUBSCRIPTION_LEASE_S="30",
    )
    env.pop("TEST_DATABASE_NAME", None)
    # One process (make run starts one per core): LIVE_MAX_STREAMS bounds each web process's streams,
    # and these tests count them.
    with mock.patch.dict(os.environ, {"EVENTFOLD_WEB_PROCESSES": "1"}):
        cmd = [*(cmd or web_command(str(port))), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/api/openapi.json")
            if probe.getresponse().status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the ASGI server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc, port


@pytest.fixture(scope="module")
def live(django_db_setup, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("live-events") / "uvicorn.log"
    proc, port = start_server(log)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log_text = log.read_text()
    assert "Traceback" not in log_text and "ended on an error" not in log_text, log_text[-3000:]


def call(address: str, token: str | None, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(address, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


class Sse:
    """One server-sent events connection: its messages as dicts of their fields."""

    def __init__(self, address: str, token: str | None, path: str = "/api/events/live", **headers: str) -> None:
        self.conn = http.client.HTTPConnection(address, timeout=10)
        sent = {"Accept": "text/event-stream", **headers}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        self.conn.request("GET", path, headers=sent)
        self.response = self.conn.getresponse()
        self.comments: list[str] = []

    def next(self) -> dict[str, str]:
        """The next message (a dict of its fields), or a comment as {"comment": text}."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            assert line, "the stream ended"
            text = line.decode().rstrip("\n")
            if not text:
                if fields:
                    return fields
                continue
            if text.startswith(":"):  # a comment: a message of its own here
                self.comments.append(text)
                return {"comment": text}
            name, _, value = text.partition(":")
            fields[name] = value.removeprefix(" ")

    def events(self) -> Iterator[dict[str, str]]:
        while True:
            message = self.next()
            if "data" in message:
                yield message

    def cut(self) -> None:
        """Close the socket under the stream, as a client that goes away does."""
        sock = self.conn.sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.conn.close()


def walk(address: str, token: str, **filters: str) -> tuple[list[dict[str, Any]], str]:
    """GET /api/events walked to the end: its events, and the cursor after the last."""
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        query = urlencode({"limit": 1000, **({"after": after} if after else {}), **filters})
        status, page = call(address, token, "GET", f"/api/events?{query}")
        assert status == 200, page
        items += page["items"]
        if not page["items"] and not page["partial"]:
            return items, after
        after = page["next"] or after


def the_log(address: str, token: str, **filters: str) -> list[dict[str, Any]]:
    return walk(address, token, **filters)[0]


class Writer(threading.Thread):
    """Commands through the live server while the test reads: accounts opened, then deposits."""

    def __init__(self, address: str, token: str, accounts: int = 4, deposits: int = 60) -> None:
        super().__init__(daemon=True)
        self.address, self.token, self.accounts, self.deposits = address, token, accounts, deposits
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            ids = []
            for i in range(self.accounts):
                status, body = call(
                    self.address, self.token, "POST", "/api/accounts", {"owner": f"O{i}", "currency": "EUR"}
                )
                assert status == 201, body
                ids.append(body["account_id"])
            for n in range(self.deposits):
                status, body = call(
                    self.address, self.token, "POST", f"/api/accounts/{ids[n % len(ids)]}/deposits", {"amount": n + 1}
                )
                assert status == 200, body
                time.sleep(0.005)
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def tokens(transactional_db) -> dict[str, str]:
    return {"viewer": make_user("vic", "viewer"), "operator": make_user("olga", "operator")}


def read_until(stream: Sse, event_id: str, got: list[dict[str, str]], timeout: float = 30) -> None:
    """Read into `got` until the event `event_id` arrives."""
    deadline = time.monotonic() + timeout
    for message in stream.events():
        got.append(message)
        if json.loads(message["data"])["event_id"] == event_id:
            return
        assert time.monotonic() < deadline, "the stream did not reach the end of the log"


def test_a_client_cut_off_mid_stream_resumes_from_its_cursor_and_ends_with_exactly_the_log(live, tokens):
    writer = Writer(live, tokens["operator"])
    first = Sse(live, tokens["viewer"])
    assert first.response.status == 200
    assert first.response.getheader("Content-Type").startswith("text/event-stream")
    assert first.next() == {"retry": "2000"}
    writer.start()
    got: list[dict[str, str]] = []
    for message in first.events():
        got.append(message)
        if len(got) == 25:
            break
    first.cut()  # mid-stream: the writer is still appending
    assert writer.is_alive(), "the writer finished before the cut: the test would prove nothing"

    second = Sse(live, tokens["viewer"], **{"Last-Event-ID": got[-1]["id"]})
    assert second.response.status == 200
    writer.join(60)
    assert writer.error is None, writer.error
    log = the_log(live, tokens["viewer"])
    read_until(second, log[-1]["event_id"], got)
    second.cut()

    received = [json.loads(m["data"]) for m in got]
    assert [e["event_id"] for e in received] == [e["event_id"] for e in log]  # same ids, same order
    assert len({e["event_id"] for e in received}) == len(received)  # no repeat
    assert received == log  # every event exactly as GET /api/events serves it
    assert [m["event"] for m in got] == [e["type"] for e in log]
    k = len(got) // 2
    status, page = call(live, tokens["viewer"], "GET", f"/api/events?limit=1&after={got[k]['id']}")
    assert status == 200 and page["items"] == [log[k + 1]]  # an id is the cursor GET /api/events takes


@pytest.mark.parametrize(
    ("filters", "wanted"),
    [
        ({"type": "ledger.FundsDeposited"}, lambda e: e["type"] == "ledger.FundsDeposited"),
        ({"category": "account"}, lambda e: e["category"] == "account"),
        ({"category": "transfer"}, lambda e: e["category"] == "transfer"),
    ],
)
def test_filters_are_applied_on_the_server(live, tokens, filters, wanted):
    writer = Writer(live, tokens["operator"], accounts=2, deposits=10)
    writer.run()
    assert writer.error is None, writer.error
    log = the_log(live, tokens["viewer"])
    expected = [e for e in log if wanted(e)]
    assert expected == the_log(live, tokens["viewer"], **filters)
    stream = Sse(live, tokens["viewer"], "/api/events/live?" + urlencode(filters))
    assert stream.response.status == 200
    got: list[dict[str, str]] = []
    if expected:
        read_until(stream, expected[-1]["event_id"], got)
    else:  # nothing matches: the stream moves its cursor past the log and keeps the connection alive
        while len(stream.comments) < 1:
            message = stream.next()
            assert "data" not in message, message
    stream.cut()
    assert [json.loads(m["data"]) for m in got] == expected


def test_a_stream_that_has_caught_up_sends_keep_alive_comments_and_new_events(live, tokens):
    stream = Sse(live, tokens["viewer"], f"/api/events/live?category={QUIET}")
    assert stream.next() == {"retry": "2000"}
    started = time.monotonic()
    while not stream.comments:
        message = stream.next()
        assert "data" not in message
    assert stream.comments == [": keep-alive"]
    assert time.monotonic() - started < HEARTBEAT_S + 2
    stream.cut()

    _, end = walk(live, tokens["viewer"], type="ledger.AccountOpened")
    caught_up = Sse(live, tokens["viewer"], f"/api/events/live?type=ledger.AccountOpened&after={end}")
    assert caught_up.next() == {"retry": "2000"}
    status, body = call(live, tokens["operator"], "POST", "/api/accounts", {"owner": "New", "currency": "EUR"})
    assert status == 201
    arrived = json.loads(next(caught_up.events())["data"])  # woken by the head watcher, not a new request
    assert arrived["stream_id"] == body["account_id"] and arrived["type"] == "ledger.AccountOpened"
    caught_up.cut()


def test_no_token_or_a_bad_one_is_401_in_the_error_body(live, tokens):
    for token in (None, "not-a-token"):
        stream = Sse(live, token)
        assert stream.response.status == 401
        assert json.loads(stream.response.read())["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    [
        ("/api/events/live", {"Last-Event-ID": "garbage"}, "Last-Event-ID"),
        ("/api/events/live", {"Last-Event-ID": "MTIzLjQ1Ng.."}, "Last-Event-ID"),
        ("/api/events/live?after=%F0%9F%92%A5", {}, "after"),
        ("/api/events/live?after=LTEuMQ", {}, "after"),  # "-1.1"
        ("/api/events/live?type=ledger.NoSuchThing", {}, "type"),
        ("/api/events/live?category=" + "x" * 300, {}, "category"),
        ("/api/events/live?categroy=account", {}, "categroy"),
    ],
)
def test_bad_cursors_and_filters_are_422_in_the_error_body(live, tokens, path, headers, field):
    stream = Sse(live, tokens["viewer"], path, **headers)
    assert stream.response.status == 422
    body = json.loads(stream.response.read())
    assert body["error"] == "validation_error" and field in body["fields"], body


def test_streams_beyond_the_bound_are_503_and_a_closed_stream_frees_its_place(live, tokens):
    streams = [Sse(live, tokens["viewer"], f"/api/events/live?category={QUIET}") for _ in range(MAX_STREAMS)]
    assert [s.response.status for s in streams] == [200] * MAX_STREAMS
    refused = Sse(live, tokens["viewer"])
    assert refused.response.status == 503
    assert refused.response.getheader("Retry-After") == "5"
    assert json.loads(refused.response.read())["error"] == "too_many_streams"
    streams.pop().cut()  # the server notices the disconnect and ends that stream

    def admitted() -> bool:
        again = Sse(live, tokens["viewer"], f"/api/events/live?category={QUIET}")
        if again.response.status == 503:
            again.response.read()
            return False
        streams.append(again)
        return True

    wait_for(admitted, timeout=10, what="the closed stream's place to be free")
    for s in streams:
        s.cut()


def test_a_fetch_that_waits_returns_as_soon_as_an_event_arrives(live, tokens):
    status, body = call(
        live, tokens["operator"], "POST", "/api/subscriptions", {"name": "waiting", "types": ["ledger.AccountOpened"]}
    )
    assert status == 201, body
    while True:  # past every account the suite opened so far (there may be more than a page of them)
        status, first = call(live, tokens["viewer"], "GET", "/api/subscriptions/waiting/events?consumer=c1&limit=1000")
        assert status == 200, first
        if not first["items"]:
            break
        status, acked = call(
            live,
            tokens["viewer"],
            "POST",
            "/api/subscriptions/waiting/ack",
            {"consumer": "c1", "positions": first["ack"]},
        )
        assert status == 200, acked

    def later() -> None:
        time.sleep(1)
        call(live, tokens["operator"], "POST", "/api/accounts", {"owner": "Late", "currency": "EUR"})

    threading.Thread(target=later, daemon=True).start()
    started = time.monotonic()
    status, fetched = call(live, tokens["viewer"], "GET", "/api/subscriptions/waiting/events?consumer=c1&wait=10")
    took = time.monotonic() - started
    assert status == 200 and [e["type"] for e in fetched["items"]] == ["ledger.AccountOpened"], fetched
    assert 0.9 < took < 5, took


def test_the_web_server_stops_with_streams_open(tmp_path, tokens):
    """uvicorn waits for every response to end before it stops, and a live stream never ends: as
    `make run` starts it, it cancels them after WEB_GRACEFUL_SHUTDOWN_S."""
    proc, port = start_server(tmp_path / "uvicorn.log")
    stream = Sse(f"127.0.0.1:{port}", tokens["viewer"], "/api/events/live?category=transfer")
    assert stream.next() == {"retry": "2000"}
    started = time.monotonic()
    proc.terminate()
    try:
        proc.wait(timeout=WEB_GRACEFUL_SHUTDOWN_S + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - started < WEB_GRACEFUL_SHUTDOWN_S + 10
    stream.cut()


def test_live_streams_are_measured_apart_from_the_api(live, tokens):
    stream = Sse(live, tokens["viewer"], f"/api/events/live?category={QUIET}")
    assert stream.next() == {"retry": "2000"}
    stream.cut()

    def measured() -> bool:
        conn = http.client.HTTPConnection(live, timeout=10)
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {tokens['viewer']}"})
        text = conn.getresponse().read().decode()
        conn.close()
        return any(
            line.startswith("eventfold_http_request_duration_seconds_count{")
            and 'part="stream"' in line
            and 'status="200"' in line
            for line in text.splitlines()
        )

    wait_for(measured, timeout=10, what="the stream's duration under part=stream")
