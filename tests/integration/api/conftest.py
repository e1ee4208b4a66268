import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from app.core.models import ApiToken, Profile
from tests.conftest import worker_database_url

ROOT = Path(__file__).resolve().parents[3]
LIVE_BODY_LIMIT = 4096


class Api:
    """A small HTTP client for the REST API with one user's bearer token."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if self.token is not None:
            out["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        return out

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        **headers: str,
    ):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.client.generic("POST", path, data, content_type=content_type, **self._headers(headers))

    def get(self, path: str, **params: Any):
        headers = {k: v for k, v in params.items() if k.startswith("header_")}
        query = {k: v for k, v in params.items() if not k.startswith("header_")}
        return self.client.get(path, query, **self._headers({k[7:]: v for k, v in headers.items()}))


def make_user(username: str, role: str) -> str:
    user, _ = get_user_model().objects.get_or_create(username=username)
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    return ApiToken.issue(user)[1]


@pytest.fixture
def viewer(transactional_db) -> Api:
    return Api(make_user("vic", "viewer"))


@pytest.fixture
def operator(transactional_db) -> Api:
    return Api(make_user("olga", "operator"))


@pytest.fixture
def admin(transactional_db) -> Api:
    return Api(make_user("ada", "admin"))


@pytest.fixture
def anonymous(transactional_db) -> Api:
    return Api(None)


def open_account(api: Api, owner: str = "Ann Example", currency: str = "EUR", **extra: Any) -> str:
    response = api.post("/api/accounts", {"owner": owner, "currency": currency, **extra})
    assert response.status_code == 201, response.content
    return response.json()["account_id"]


@pytest.fixture(scope="session")
def live_api(django_db_setup, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """`uvicorn app.asgi:application` on a free port, on the test database, with a 4 KiB body limit:
    for what Django's test client cannot send (chunked bodies, a body that never ends). Yields
    (host, port). No worker: these requests are refused before anything needs one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("live-api") / "uvicorn.log"
    env = dict(os.environ, DATABASE_URL=worker_database_url(), API_MAX_BODY_BYTES=str(LIVE_BODY_LIMIT))
    env.pop("TEST_DATABASE_NAME", None)
    cmd = [sys.executable, "-m", "uvicorn", "app.asgi:application", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/openapi.json")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the ASGI server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield "127.0.0.1", port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
