"""The real web server of `make run` (app/stack.py's command line, uvicorn), on the test database.

Issue 12, point 6: uvicorn believed X-Forwarded-For from 127.0.0.1 by default, so any client on
the machine (or behind a local proxy) chose its own address and got fresh login tries with each.
Point 7: no console request may hold up another. A page waiting for `?consistent_with=` held a
thread and a database connection of its own for the whole wait (up to CONSISTENCY_TIMEOUT_S), so
enough waiting pages took every connection PostgreSQL has; now a wait holds neither, and another
page is answered meanwhile (asserted on ordering and counts, never on timings)."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model

from tests.integration.console.clients import console_client
from tests.integration.console.live import Browser, database_sessions, serving

NEVER_QUERY = f"consistent_with={10**15}"  # a position no event has: a wait for it lasts its whole timeout
WAITING = 40  # more than any server's thread pool (asyncio's default: at most 32 threads)


@pytest.fixture(scope="module")
def port(django_db_setup, tmp_path_factory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("live") / "uvicorn.log"
    with serving(log, CONSISTENCY_TIMEOUT_S="15", LOGIN_MAX_FAILURES="3") as port:
        yield port


def visitor(port: int, username: str) -> Browser:
    """A logged-in viewer's browser (the session made here, committed, its cookie handed over)."""
    browser = Browser(port, timeout=60)
    browser.cookies["sessionid"] = console_client(username, "viewer").cookies["sessionid"].value
    return browser


def test_a_forged_forwarded_address_gets_no_fresh_login_tries(transactional_db, port):
    name = f"fay{secrets.token_hex(4)}"
    get_user_model().objects.create_user(name, password="right-password-123")
    statuses = []
    for _ in range(4):
        forger = Browser(port, headers={"X-Forwarded-For": f"198.51.100.{secrets.randbelow(250) + 1}"})
        statuses.append(forger.log_in(name, "wrong"))
    assert statuses == [200, 200, 429, 429]


def test_waiting_pages_hold_no_connection_and_do_not_hold_up_another(transactional_db, port):
    session = visitor(port, "wanda").cookies
    answered: list[int] = []
    threads = []
    for _ in range(WAITING):
        waiter = Browser(port, timeout=60)
        waiter.cookies = dict(session)
        threads.append(threading.Thread(target=lambda w=waiter: answered.append(w.get(f"/accounts/?{NEVER_QUERY}")[0])))
    for thread in threads:
        thread.start()
    status, _ = visitor(port, "otto").get("/catalog/")
    assert status == 200 and not answered, "another page must be answered while the waits go on"
    most = 0
    while any(thread.is_alive() for thread in threads):  # the whole wait: the old way held a session each
        most = max(most, database_sessions(port))
        time.sleep(0.1)
    assert answered == [200] * WAITING
    assert most < WAITING, f"{most} database sessions for {WAITING} waiting requests"
