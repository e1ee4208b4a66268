"""The body limits hold on the bytes actually received, whatever the framing, against the real
ASGI server (Django's test client cannot send a chunked body): a chunked body past the limit is
413 as soon as the limit is passed, without waiting for the rest; a body that is not JSON is 415
whether or not it declared its length."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from uuid import UUID

import pytest

from eventstore.store import EventStore
from tests.integration.api.conftest import LIVE_BODY_LIMIT, make_user

# An answer must come long before this; it only keeps a broken server from hanging the suite.
NO_ANSWER_S = 60


@pytest.fixture
def token(transactional_db) -> str:
    return make_user("liam-live", "operator")


def chunks(payload: bytes, size: int = 512) -> Iterator[bytes]:
    for i in range(0, len(payload), size):
        yield payload[i : i + size]


def request(token: str, body: bytes, *, content_type: str = "application/json", chunked: bool) -> bytes:
    """POST /api/accounts as bytes on the wire: the body chunked (in 512-byte chunks) or with its length."""
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks(body)) + b"0\r\n\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % len(body)
    return (
        b"POST /api/accounts HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Type: {content_type}\r\n".encode()
        + framing
        + b"\r\n"
        + body
    )


def padded_open_account(size: int) -> bytes:
    """A valid command, padded with JSON whitespace to `size` bytes."""
    body = json.dumps({"owner": "Padded Person", "currency": "EUR"}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def raw_exchange(live_api, request: bytes) -> tuple[int, dict]:
    """Send a whole request at once (one write, so the server has all of it before it answers and
    closes), then read the answer: (status, JSON body)."""
    with socket.create_connection(live_api, timeout=NO_ANSWER_S) as sock:
        sock.sendall(request)
        received = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():  # the answer's own framing
        pieces, rest = [], body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            if int(size, 16) == 0:
                break
            pieces.append(rest[: int(size, 16)])
            rest = rest[int(size, 16) + 2 :]
        body = b"".join(pieces)
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_a_chunked_body_past_the_limit_is_413(live_api, token):
    head = EventStore().head()
    status, answer = raw_exchange(live_api, request(token, padded_open_account(LIVE_BODY_LIMIT * 3), chunked=True))
    assert (status, answer.get("error")) == (413, "payload_too_large"), answer
    assert EventStore().head() == head  # nothing appended


def test_a_chunked_body_within_the_limit_is_a_command(live_api, token):
    status, answer = raw_exchange(live_api, request(token, padded_open_account(LIVE_BODY_LIMIT - 10), chunked=True))
    assert status == 201, answer
    assert EventStore().stream_version(UUID(answer["account_id"])) == 1


def test_reading_stops_at_the_limit_without_waiting_for_the_rest(live_api, token):
    """A body that never ends (a client trickling bytes for ever) is answered once it passes the
    limit: the server does not keep reading, nor spool it to disk."""
    piece = b"[" + b" " * 1023
    past_the_limit = b"%x\r\n%s\r\n" % (len(piece), piece) * (LIVE_BODY_LIMIT // len(piece) + 1)
    with socket.create_connection(live_api, timeout=NO_ANSWER_S) as sock:
        sock.sendall(
            b"POST /api/accounts HTTP/1.1\r\nHost: test\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + past_the_limit  # and never the last chunk: the body does not end
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = sock.recv(4096)
            assert received, "the server closed the connection without an answer"
            answer += received
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


@pytest.mark.parametrize("chunked", [True, False])
def test_a_body_that_is_not_json_is_415_whatever_its_framing(live_api, token, chunked):
    head = EventStore().head()
    body = json.dumps({"owner": "Plain Text", "currency": "EUR"}).encode()
    status, answer = raw_exchange(live_api, request(token, body, content_type="text/plain", chunked=chunked))
    assert (status, answer.get("error")) == (415, "unsupported_media_type"), answer
    assert EventStore().head() == head


def test_a_declared_length_past_the_limit_is_413_before_any_byte_is_read(live_api, token):
    with socket.create_connection(live_api, timeout=NO_ANSWER_S) as sock:
        sock.sendall(
            b"POST /api/accounts HTTP/1.1\r\nHost: test\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {LIVE_BODY_LIMIT * 100}\r\n\r\n".encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_any_method_is_held_to_the_limit(live_api, token):
    """A body is read whole by Django whatever the method: a GET with a chunked body is bounded too."""
    body = b"{" + b" " * (LIVE_BODY_LIMIT * 3) + b"}"
    framed = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks(body)) + b"0\r\n\r\n"
    status, answer = raw_exchange(
        live_api,
        b"GET /api/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + framed,
    )
    assert (status, answer.get("error")) == (413, "payload_too_large"), answer
