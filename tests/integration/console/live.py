"""A real ASGI server for the tests that need one: the very command line `make run` starts
(app/stack.py's web_command), in a process of its own, pointed at the test database; and a small
HTTP client for it that keeps cookies and fills in the CSRF token of Django's forms."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection

from app.stack import web_command
from tests.conftest import worker_database_url

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(log: Path, **env: str) -> Iterator[int]:
    """The web server of `make run` on a free port, with `env` added to its environment; yields the
    port. Its database connections carry the application name `live-<port>`."""
    port = free_port()
    environ = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX,
        PGAPPNAME=f"live-{port}",
        **env,
    )
    environ.pop("TEST_DATABASE_NAME", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(web_command(str(port)), env=environ, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/login/")
                if probe.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ASGI server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a request still waiting in a worker thread
            proc.kill()
            proc.wait()


def database_sessions(port: int) -> int:
    """How many database sessions the server on `port` has open."""
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [f"live-{port}"])
        return cur.fetchone()[0]


class Browser:
    """One visitor: a connection per request, the cookies the server set, and extra headers."""

    def __init__(self, port: int, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
        self.port = port
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.connection: http.client.HTTPConnection | None = None
        self.response_headers: http.client.HTTPMessage = http.client.HTTPMessage()  # the last answer's

    def request(self, method: str, path: str, body: dict[str, str] | None = None) -> tuple[int, str]:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        headers = dict(self.headers)
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = headers["Referer"] = f"http://127.0.0.1:{self.port}"
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        self.response_headers = response.headers
        for value in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(value).items():
                self.cookies[name] = morsel.value
        text = response.read().decode()
        self.connection.close()
        return response.status, text

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def log_in(self, username: str, password: str) -> int:
        """Post the login form as a person would (its CSRF token from the page); the status."""
        _, page = self.get("/login/")
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found, "the login page has no CSRF token"
        form = {"csrfmiddlewaretoken": found.group(1), "username": username, "password": password}
        return self.request("POST", "/login/", form)[0]

    def abort(self) -> None:
        """Hang up a request still waiting for its answer (from another thread)."""
        if self.connection is not None and self.connection.sock is not None:
            self.connection.sock.shutdown(socket.SHUT_RDWR)
