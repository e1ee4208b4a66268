"""An API request starts no thread of its own (app/asgi.py: ApiHandler).

Django's ASGI handler runs each request in a `ThreadSensitiveContext`, in which the first
thread-sensitive call (its request_started and request_finished receivers) starts a thread for
that request alone, joined when the request ends: a tenth of a command's time in P2's profile
(docs/benchmarks.md). The API's handler runs them on the event loop while they are only Django's
own (they find no connection there to look at), else on one long-lived thread; the console keeps
Django's.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_started

from app import asgi
from app.asgi import api_application, django_application

REQUESTS = 20


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


def _requests(application: Any, path: str, n: int) -> list[int]:
    async def run() -> list[int]:
        statuses = []
        for _ in range(n):
            talk = ApplicationCommunicator(application, _scope(path))
            await talk.send_input({"type": "http.request", "body": b"", "more_body": False})
            response = await talk.receive_output(10)
            while (await talk.receive_output(10)).get("more_body"):
                pass
            await talk.wait(10)
            statuses.append(response["status"])
        return statuses

    return asyncio.run(run())


def _threads_started(monkeypatch: Any, application: Any, path: str) -> tuple[list[int], int]:
    """(the statuses of REQUESTS requests to `path`, the threads started meanwhile)."""
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    with monkeypatch.context() as m:
        m.setattr(threading.Thread, "start", counted)
        statuses = _requests(application, path, REQUESTS)
    return statuses, len(started)


def test_api_requests_start_no_thread_each(monkeypatch) -> None:
    statuses, started = _threads_started(monkeypatch, api_application, "/api/projections")
    assert statuses == [401] * REQUESTS  # no token: refused before any database work
    # a few once (the API's sync thread, the loop's pool), none per request
    assert started <= 4, f"{started} threads started for {REQUESTS} API requests"


def test_the_console_keeps_djangos_thread_per_request(monkeypatch) -> None:
    """The comparison that shows the count above means something: Django's own handler, as the
    console's pages get it, starts one thread per request."""
    statuses, started = _threads_started(monkeypatch, django_application, "/healthz-not-a-page")
    assert len(statuses) == REQUESTS
    assert started >= REQUESTS


def test_djangos_own_request_receivers_run_on_the_loop_without_a_hop(monkeypatch) -> None:
    """Django's request_started and request_finished receivers only look at the calling thread's
    connections, and the API opens none on the loop's thread: they run there (app.asgi.OnTheLoop),
    not on a thread they would hop to and back, twice per request."""
    calls = {"loop": 0, "thread": 0}
    for executor, key in ((asgi.API_ON_LOOP, "loop"), (asgi.API_SYNC_THREAD, "thread")):
        submit = executor.submit

        def counted(fn, /, *args, _submit=submit, _key=key, **kwargs):
            calls[_key] += 1
            return _submit(fn, *args, **kwargs)

        monkeypatch.setattr(executor, "submit", counted)
    assert _requests(api_application, "/api/projections", 5) == [401] * 5
    assert calls["thread"] == 0 and calls["loop"] >= 2 * 5, calls


def test_a_projects_own_request_receiver_gets_the_api_thread() -> None:
    """A receiver the project adds may use the database: it runs on the API's sync thread, as
    Django would run it, never on the event loop."""
    threads: list[str] = []

    def receiver(**_: Any) -> None:
        threads.append(threading.current_thread().name)

    request_started.connect(receiver, weak=False, dispatch_uid="test-api-threads-receiver")
    try:
        assert _requests(api_application, "/api/projections", 3) == [401] * 3
    finally:
        request_started.disconnect(dispatch_uid="test-api-threads-receiver")
    assert len(threads) == 3 and all(name.startswith("api-sync") for name in threads), threads
