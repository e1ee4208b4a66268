"""End-to-end: the real ASGI server (uvicorn, websockets included) in a process of its own,
pointed at the test database, the session's real Celery worker, and Debian's chromium driven by
Playwright. Every browser test saves a screenshot under `artifacts/screenshots/`."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from app.core.models import Profile
from tests.conftest import worker_database_url

# Playwright's sync API keeps an event loop running in this thread; the tests' own database work
# stays synchronous and is safe (Playwright's documented setting for Django).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "a-long-test-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker, celery_worker_process, tmp_path_factory) -> Iterator[str]:
    """`uvicorn app.asgi:application` on a free port; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "uvicorn.log"
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX,
        PGAPPNAME=f"e2e-server-{os.getpid()}",
        # Every test here comes from 127.0.0.1, and the generated requests alone send hundreds
        # without a token in a minute: the per-address bound of anonymous requests is tested
        # in-process (tests/integration/api/test_rate_limit.py), not here.
        API_ANON_RATE_LIMIT="1000000",
    )
    env.pop("TEST_DATABASE_NAME", None)
    cmd = [sys.executable, "-m", "uvicorn", "app.asgi:application", "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the ASGI server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:  # a failure, never a skip: CI installs it (.ci/run), and so should you
        raise RuntimeError("Debian's chromium is required for the browser tests: apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is open, and
    Django's test client (async views) refuses to run beside one; tests/conftest.py also runs
    the browser tests last."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, request) -> Iterator[object]:
    """A fresh browser context (no cookies) per test; a screenshot of where it ended."""
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()


def console_user(username: str, role: str) -> str:
    """A committed user with a console password; returns the username."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.set_password(PASSWORD)
    user.save()
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    return username


def log_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
