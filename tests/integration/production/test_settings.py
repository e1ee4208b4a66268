"""Production settings (DJANGO_ENV=production): Django's deploy check passes with the five
required variables and nothing else; a missing one stops the process (manage.py, uvicorn, a
Celery worker or beat) with one sentence that names it and says how to make a value, no
traceback; TLS is enforced (HSTS, SSL redirect, secure cookies), except for the probes' /healthz
and /metrics; a proxy's X-Forwarded-Proto is trusted only when SECURE_PROXY_SSL_HEADER says so."""

from __future__ import annotations

import asyncio
import base64
import os
import runpy
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.test import Client, override_settings

from app.core import health, views

ROOT = Path(__file__).resolve().parents[3]
HOST = "eventfold.example.com"
REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "EVENTFOLD_MASTER_KEY", "DATABASE_URL", "REDIS_URL")
# What a deployment may set and these tests must not inherit from the machine running them.
OPTIONAL = ("CSRF_TRUSTED_ORIGINS", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD", "DEBUG")
# What SecurityMiddleware, the CSRF and session machinery and host validation read.
SECURITY = (
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)


def production_env(**changes: str | None) -> dict[str, str]:
    """The process environment of a production deployment: the five required variables (a
    change of None leaves one out) and nothing of this machine's or the test run's settings
    (which set, e.g., DJANGO_ALLOW_ASYNC_UNSAFE for the browser tests)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")}
    env.update(
        DJANGO_ENV="production",
        DJANGO_SETTINGS_MODULE="app.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS=HOST,
        EVENTFOLD_MASTER_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DATABASE_URL="postgresql://eventfold:pw@db.invalid:5432/eventfold",
        REDIS_URL="redis://redis.invalid:6379/0",
    )
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def production_settings(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> dict[str, Any]:
    """app/settings.py as a production process would load it (the running Django is untouched)."""
    for name in (*REQUIRED, *OPTIONAL, "EVENTFOLD_TESTING"):
        monkeypatch.delenv(name, raising=False)
    for name, value in production_env(**changes).items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "app" / "settings.py"), run_name="production_settings")


def test_the_deploy_check_passes_with_the_five_required_variables():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize("missing", REQUIRED)
@pytest.mark.parametrize("how", ["unset", "blank"])
def test_a_missing_required_variable_stops_the_process_with_one_clear_sentence(missing, how):
    done = manage("check", "--deploy", env=production_env(**{missing: None if how == "unset" else "  "}))
    assert done.returncode != 0
    [last] = done.stderr.strip().splitlines()  # the sentence alone: no traceback
    assert last.startswith("Eventfold cannot start: "), done.stderr
    assert f"{missing} must be set" in last and "DJANGO_ENV=production" in last
    if missing == "SECRET_KEY":
        assert 'python -c "import secrets; print(secrets.token_urlsafe(50))"' in last
    if missing == "EVENTFOLD_MASTER_KEY":
        assert "urlsafe_b64encode(os.urandom(32))" in last


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "uvicorn", "app.asgi:application", "--port", "0"],
        ["-m", "celery", "-A", "app", "worker"],
        ["-m", "celery", "-A", "app", "beat"],
    ],
    ids=["uvicorn", "worker", "beat"],
)
def test_every_process_stops_on_a_missing_setting_with_its_sentence_alone(command):
    env = production_env(EVENTFOLD_MASTER_KEY=None)
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if "EVENTFOLD_MASTER_KEY must be set" in line] == [
        done.stderr.strip().splitlines()[-1]
    ]
    assert done.stderr.strip().splitlines()[-1].startswith("Eventfold cannot start: EVENTFOLD_MASTER_KEY must be set")


def test_several_missing_variables_are_named_together():
    done = manage("check", env=production_env(REDIS_URL=None, SECRET_KEY=None))
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and "SECRET_KEY must be set" in last and "REDIS_URL must be set" in last


def test_a_master_key_that_is_not_32_bytes_of_base64_is_refused_at_start():
    for bad in ("not base64 at all!", base64.urlsafe_b64encode(os.urandom(16)).decode()):
        done = manage("check", env=production_env(EVENTFOLD_MASTER_KEY=bad))
        assert done.returncode != 0
        assert "EVENTFOLD_MASTER_KEY must be 32 random bytes" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("API_RATE_LIMIT", "lots"),
        ("API_RATE_LIMIT", "-1"),
        ("API_ANON_RATE_LIMIT", "2.5"),
        ("API_RATE_WINDOW_S", "0"),
        ("API_TOKEN_CACHE_S", "-5"),
        ("API_TOKEN_CACHE_S", "nan"),
        ("BACKPRESSURE_READ_EVERY_S", "soon"),
        ("INBOX_PREFETCH", "0"),
        ("LOGIN_COOLOFF_S", "5m"),
        ("LIVE_MAX_STREAMS", "many"),
        ("REDIS_TIMEOUT_S", "fast"),
        ("EVENTSTORE_SNAPSHOT_EVERY", "-1"),
        ("SECURE_HSTS_SECONDS", "a year"),
    ],
)
def test_a_bad_number_stops_the_process_with_one_sentence_naming_it(name, bad):
    done = manage("check", env=production_env(**{name: bad}))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    [last] = done.stderr.strip().splitlines()
    assert last.startswith(f"Eventfold cannot start: {name}={bad!r} is not "), last
    assert f"set {name} to one" in last


def test_good_numbers_are_taken_and_blank_ones_are_the_defaults(monkeypatch):
    prod = production_settings(
        monkeypatch, API_RATE_LIMIT="1200", API_ANON_RATE_LIMIT="0", API_TOKEN_CACHE_S="0.5", API_RATE_WINDOW_S=" "
    )
    assert (prod["API_RATE_LIMIT"], prod["API_ANON_RATE_LIMIT"], prod["API_TOKEN_CACHE_S"]) == (1200, 0, 0.5)
    assert (prod["API_RATE_WINDOW_S"], prod["BACKPRESSURE_READ_EVERY_S"]) == (60, 1)


@pytest.mark.parametrize("bad", ["two", "1.5", "-3"])
def test_make_run_stops_on_a_bad_number_of_web_processes_before_starting_anything(bad):
    env = production_env(EVENTFOLD_WEB_PROCESSES=bad, DJANGO_ENV=None)  # no embedded service may start
    done = subprocess.run(
        [sys.executable, "-m", "app.stack", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.stdout.strip().splitlines() == [
        f"services | Eventfold cannot start: EVENTFOLD_WEB_PROCESSES={bad!r} is not a whole number of 0 or more: "
        f"set EVENTFOLD_WEB_PROCESSES to one (its default is {max(1, os.cpu_count() or 1)}) or leave it unset."
    ]


def test_production_settings_derive_what_they_can_and_trust_no_proxy_by_default(monkeypatch):
    prod = production_settings(monkeypatch, ALLOWED_HOSTS=f"{HOST}, .example.org,")
    assert prod["DEBUG"] is False
    assert prod["ALLOWED_HOSTS"] == [HOST, ".example.org"]
    assert prod["CSRF_TRUSTED_ORIGINS"] == [f"https://{HOST}", "https://*.example.org"]
    assert prod["SECURE_PROXY_SSL_HEADER"] is None  # X-Forwarded-Proto from a client means nothing
    assert prod["SECURE_SSL_REDIRECT"] and prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"]
    assert prod["SECURE_HSTS_SECONDS"] >= 31536000
    assert prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and prod["SECURE_HSTS_PRELOAD"]
    assert prod["REDIS_URL"] == "redis://redis.invalid:6379/0"  # never the embedded server

    prod = production_settings(
        monkeypatch,
        CSRF_TRUSTED_ORIGINS="https://console.example.com,https://ops.example.com",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_HSTS_SECONDS="3600",
        SECURE_HSTS_PRELOAD="0",
    )
    assert prod["CSRF_TRUSTED_ORIGINS"] == ["https://console.example.com", "https://ops.example.com"]
    assert prod["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert prod["SECURE_HSTS_SECONDS"] == 3600 and prod["SECURE_HSTS_PRELOAD"] is False
    assert "security.W021" in prod["SILENCED_SYSTEM_CHECKS"]  # no preload is a choice, documented
    assert production_settings(monkeypatch, SECURE_PROXY_SSL_HEADER="X-Forwarded-Ssl: on")[
        "SECURE_PROXY_SSL_HEADER"
    ] == ("HTTP_X_FORWARDED_SSL", "on")


@pytest.fixture
def healthy(monkeypatch):
    """/healthz without asking the database, broker and workers: only the way there is under test."""
    monkeypatch.setattr(views, "health", lambda: health.Health(None, None, ["w@h"]))


def security_settings(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> override_settings:
    prod = production_settings(monkeypatch, **changes)
    return override_settings(**{name: prod[name] for name in SECURITY})


def test_plain_http_is_redirected_to_https_except_the_probes(monkeypatch, healthy):
    with security_settings(monkeypatch):
        client = Client(SERVER_NAME=HOST)
        login = client.get("/login/?next=/")
        assert login.status_code == 301 and login["Location"] == f"https://{HOST}/login/?next=/"
        health_check = client.get("/healthz")
        assert health_check.status_code == 200 and health_check.json()["status"] == "ok"
        assert client.get("/metrics").status_code != 301  # not served yet, but never redirected
        assert client.get("/healthzz").status_code == 301  # the exemption is this path only
        # a client's own X-Forwarded-Proto is not believed without SECURE_PROXY_SSL_HEADER
        assert client.get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 301


def test_behind_a_tls_balancer_https_pages_carry_hsts_and_secure_cookies(monkeypatch, db):
    with security_settings(monkeypatch, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"):
        client = Client(SERVER_NAME=HOST, enforce_csrf_checks=True)
        page = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
        assert page.status_code == 200
        assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
        assert page.cookies["csrftoken"]["secure"]
        assert client.get("/login/", HTTP_X_FORWARDED_PROTO="http").status_code == 301
        # a form posted from the site's own https origin passes CSRF's origin check
        csrf = page.cookies["csrftoken"].value
        posted = client.post(
            "/login/",
            {"username": "nobody", "password": "wrong", "csrfmiddlewaretoken": csrf},
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_ORIGIN=f"https://{HOST}",
        )
        assert posted.status_code == 200  # the form again (wrong password), not 403
        forged = client.post(
            "/login/",
            {"username": "nobody", "password": "wrong", "csrfmiddlewaretoken": csrf},
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_ORIGIN="https://evil.example.net",
        )
        assert forged.status_code == 403


def api_get(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One request through the REST API's own ASGI handler (app/asgi.py), built under the
    current settings: its middleware chain is not the test client's."""
    from app.asgi import ApiHandler

    headers = [(b"host", HOST.encode()), *headers]
    return asyncio.run(HttpCommunicator(ApiHandler(), "GET", path, headers=headers).get_response())


def test_the_rest_api_is_https_only_too(monkeypatch):
    with security_settings(monkeypatch, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"):
        plain = api_get("/api/projections", [])
        assert (
            plain["status"] == 301 and dict(plain["headers"])[b"Location"] == f"https://{HOST}/api/projections".encode()
        )
        secure = api_get("/api/projections", [(b"x-forwarded-proto", b"https")])
        assert secure["status"] == 401  # no token: the API itself answered
        assert dict(secure["headers"])[b"Strict-Transport-Security"].startswith(b"max-age=31536000")


def test_the_apis_https_check_runs_on_the_event_loop_not_djangos_sync_thread(monkeypatch):
    from django.middleware.security import SecurityMiddleware

    seen: list[threading.Thread] = []
    check = SecurityMiddleware.process_request
    monkeypatch.setattr(
        SecurityMiddleware, "process_request", lambda self, r: seen.append(threading.current_thread()) or check(self, r)
    )
    assert api_get("/api/projections", [])["status"] == 401
    assert seen == [threading.current_thread()]  # asyncio.run's loop runs in this very thread
