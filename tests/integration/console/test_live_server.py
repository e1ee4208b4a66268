"""The real web server of `make run` (app/stack.py's command line, uvicorn), on the test database.

Issue 12, point 6: uvicorn believed X-Forwarded-For from 127.0.0.1 by default, so any client on
the machine (or behind a local proxy) chose its own address and got fresh login tries with each.
Point 7: no console request may hold up another. A page waiting for `?consistent_with=` held a
thread and a database connection of its own for the whole wait (up to CONSISTENCY_TIMEOUT_S), so
enough waiting pages took every connection PostgreSQL has; now a wait holds neither, and another
page is answered meanwhile (asserted on ordering and counts, never on timings). And a login hashes
the password it was given (a fraction of a second of CPU, or more) in the worker pool, never on the
event loop that every request of the process goes through: several slow logins at once hold up no
other page (asserted against yardsticks measured on the same server just before, not absolute
times)."""

from __future__ import annotations

import re
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.integration.console.clients import console_client
from tests.integration.console.live import Browser, database_sessions, serving

NEVER_QUERY = f"consistent_with={10**15}"  # a position no event has: a wait for it lasts its whole timeout
WAITING = 40  # more than any server's thread pool (asyncio's default: at most 32 threads)
LOGINS = 4  # failing logins at once (fewer than the worker pool's threads: cores + 4)
SLOW = 4  # their password hashes take this many times Django's PBKDF2 iterations to check


@pytest.fixture(scope="module")
def port(django_db_setup, tmp_path_factory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("live") / "uvicorn.log"
    with serving(
        log,
        CONSISTENCY_TIMEOUT_S="15",
        LOGIN_MAX_FAILURES="3",
        LOGIN_MAX_FAILURES_PER_ADDRESS="1000",  # every test here logs in from 127.0.0.1, and reruns add up
    ) as port:
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


def timed(work: Callable[[], object]) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


def failing_login(port: int, name: str) -> Callable[[], int]:
    """A login for `name` with a wrong password, ready to post (the form's CSRF token fetched
    already, so posting it is the login alone); it returns the status."""
    browser = Browser(port, timeout=120)
    _, page = browser.get("/login/")
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "the login page has no CSRF token"
    form = {"csrfmiddlewaretoken": found.group(1), "username": name, "password": "wrong-password"}
    return lambda: browser.request("POST", "/login/", form)[0]


def test_failing_logins_in_flight_do_not_hold_up_another_page(transactional_db, port):
    """Each login is for a user of its own whose password hash is made slow on purpose (PBKDF2 with
    SLOW times Django's iterations: checking it takes seconds), and fails. While LOGINS of them
    hash at once, a viewer's page is answered in less than half the time one such login takes
    alone. Had the hashing run where other requests wait for it (on the event loop, or on a
    thread other pages share), the page would have waited for at least the rest of one hash.
    The yardsticks (the page alone, one login alone) are measured on this server just before,
    on the machine as loaded as it is then; the page still competes with the hashing for the
    cores, which is why the bound is a fraction of a login, not a multiple of the page alone."""
    hasher = PBKDF2PasswordHasher()
    hashed = hasher.encode("the-right-password-123", hasher.salt(), iterations=SLOW * hasher.iterations)
    names = [f"slow{secrets.token_hex(4)}" for _ in range(LOGINS + 1)]
    get_user_model().objects.bulk_create(get_user_model()(username=name, password=hashed) for name in names)
    reader = visitor(port, "paula")

    def page() -> None:
        assert reader.get("/catalog/")[0] == 200

    page()  # the first answer of a process loads what later ones reuse
    alone = statistics.median(timed(page) for _ in range(5))
    one_login = timed(failing_login(port, names.pop()))
    assert one_login > 10 * alone, (
        f"a failing login ({one_login:.3f} s) should take far longer than a page ({alone:.3f} s)"
    )

    logins = [failing_login(port, name) for name in names]
    statuses: list[int] = []
    sent = threading.Barrier(LOGINS + 1)

    def log_in(post: Callable[[], int]) -> None:
        sent.wait()
        statuses.append(post())

    threads = [threading.Thread(target=log_in, args=(post,)) for post in logins]
    for thread in threads:
        thread.start()
    sent.wait()
    time.sleep(one_login / 10)  # the server has them all and is hashing
    took = timed(page)
    in_flight = LOGINS - len(statuses)
    for thread in threads:
        thread.join()

    assert statuses == [200] * LOGINS, "each login should fail on its password (not be refused by the throttle)"
    assert in_flight > 0, "the page should be answered while logins are still hashing"
    assert took < one_login / 2, (
        f"the page took {took:.3f} s while {LOGINS} logins hashed (one login alone {one_login:.3f} s, "
        f"the page alone {alone:.3f} s)"
    )
