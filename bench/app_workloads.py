"""P2 and P3 of docs/benchmarks.md: the whole stack (ASGI server, Celery worker and beat) started
here against a scratch schema of the configured database.

P2: 4 HTTP clients send deposits through the REST API as fast as they can.
P3: while 4 clients send at half P2's throughput, a probe measures the time from a command's
response to its effect being visible in the account read model, and (the websocket half) to the
first live hint the console's account page (topic "stream:<id>") receives once it is visible: the moment
a logged-in browser would fetch the new state.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from django.conf import settings
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from app.stack import stop_processes, web_command, web_processes
from bench import common, endpoint

SCHEMA = "eventfold_bench_app"
BASE = Path(settings.BASE_DIR)


def _database_url() -> str:
    s = settings.DATABASES["default"]
    auth = quote(s.get("USER") or "postgres") + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    host = quote(s.get("HOST") or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    options = urlencode({"options": f"-c search_path={SCHEMA}"})
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}?{options}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def stack() -> Iterator[dict[str, Any]]:
    """A fresh schema, migrated; an ASGI server, a worker with beat; an operator token, whose user
    also has a console password (for the websocket's session)."""
    with psycopg.connect(common.conninfo(None), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    env = dict(
        os.environ,
        DATABASE_URL=_database_url(),
        EVENTFOLD_QUEUE_PREFIX="bench.",
        DJANGO_SETTINGS_MODULE="app.settings",
        DEBUG="0",  # as deployed: no debug cursor recording every query
    )
    python = sys.executable
    # as DATABASE_URL's role, which made (and owns) the scratch schema, even when an owner role exists
    migrate = [python, "manage.py", "migrate", "--database", "default", "--noinput", "-v0"]
    subprocess.run(migrate, env=env, cwd=BASE, check=True)
    with psycopg.connect(common.conninfo(SCHEMA), autocommit=True) as conn:
        for statement in endpoint.TABLE.split(";"):  # the minimal endpoint's own table
            conn.execute(statement)
    password = secrets.token_urlsafe(16)
    token = subprocess.run(
        [python, "manage.py", "create_token", "bench-operator", "--role", "operator", f"--password={password}"],
        env=env,
        cwd=BASE,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = _free_port()
    queues = "bench.celery,bench.projections,bench.rebuilds"
    # The web server exactly as `make run` starts it (app/stack.py), serving the benchmark's ASGI
    # application: the real one plus the minimal deposit endpoint (bench/endpoint.py).
    web = [*web_command(str(port), app="bench.asgi:application"), "--log-level", "warning"]
    procs = [
        subprocess.Popen(web, env=env, cwd=BASE, start_new_session=True),
        subprocess.Popen(
            [
                python,
                "-m",
                "celery",
                "-A",
                "app",
                "worker",
                "-B",
                "-Q",
                queues,
                "-c",
                os.environ.get("BENCH_WORKER_CONCURRENCY", "2"),
                "--loglevel",
                "WARNING",
                "-s",
                f"/tmp/eventfold-bench-beat-{port}",
            ],
            env=env,
            cwd=BASE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # stopped with its embedded beat (app.stack.stop_processes)
        ),
    ]
    try:
        deadline = time.monotonic() + 60
        while True:  # until the server answers and /healthz sees the worker (200)
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                if _request(probe, "GET", "/healthz", None, token)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's stack did not become healthy within 60 s")
            time.sleep(0.2)
        yield {"port": port, "token": token, "username": "bench-operator", "password": password}
    finally:
        stop_processes(procs, timeout=20)
        with psycopg.connect(common.conninfo(None), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, data, headers)
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None


def _open_accounts(env: dict[str, Any], n: int) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", env["port"], timeout=30)
    ids = []
    for i in range(n):
        status, body = _request(conn, "POST", "/api/accounts", {"owner": f"Bench {i}", "currency": "EUR"}, env["token"])
        assert status == 201, body
        ids.append(body["account_id"])
    return ids


def _clients(
    env: dict[str, Any], accounts: list[str], per_client: int, rate: float | None, endpoint_path: str = ""
) -> dict[str, Any]:
    """4 keep-alive clients sending deposits, each walking the accounts from its own quarter of
    them, so that two clients are never on one account at once (before 2026-12-01 all four walked
    them in step and raced for each account: P2 measures throughput, not lost races, which
    tests/integration measure); `rate` caps each client's commands per second. With
    `endpoint_path` (the minimal endpoint's), they send them there instead of the REST API."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors = [0]

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", env["port"], timeout=30)
        mine = []
        start = time.perf_counter()
        for i in range(per_client):
            if rate:
                wait = start + i / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            account = accounts[(n * len(accounts) // 4 + i) % len(accounts)]
            t0 = time.perf_counter()
            url = f"{endpoint_path}{account}" if endpoint_path else f"/api/accounts/{account}/deposits"
            status, _ = _request(conn, "POST", url, {"amount": 1}, env["token"])
            mine.append(time.perf_counter() - t0)
            if status != 200:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "cps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "errors": errors[0],
    }


def _console_session(env: dict[str, Any]) -> str:
    """Log in to the console as a browser does (the login form, its CSRF token); the session id."""
    conn = http.client.HTTPConnection("127.0.0.1", env["port"], timeout=30)
    conn.request("GET", "/login/")
    response = conn.getresponse()
    form = response.read().decode()
    csrf = SimpleCookie(response.getheader("Set-Cookie", ""))["csrftoken"].value
    hidden = form.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    body = urlencode(
        {"username": env["username"], "password": env["password"], "csrfmiddlewaretoken": hidden, "next": "/"}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"}
    conn.request("POST", "/login/", body, headers)
    response = conn.getresponse()
    response.read()
    cookies = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    if response.status != 302 or "sessionid" not in cookies:
        raise RuntimeError(f"console login failed: {response.status}")
    return cookies["sessionid"].value


# Between probes: a little longer than a live topic's coalescing window (app/console/push.py), so
# that each probe measures how fast a change reaches a page, not how hints to one page are spaced.
PROBE_PAUSE_S = 0.35


class HintListener:
    """A console page's live socket, read by a thread that does what the page does on a hint:
    it looks at the read model at once, and notes when it heard and what it saw."""

    def __init__(self, env: dict[str, Any], topics: str, account: str) -> None:
        self.hints: queue.SimpleQueue[tuple[float, int]] = queue.SimpleQueue()
        self.account = account
        self.db = psycopg.connect(common.conninfo(SCHEMA), autocommit=True)
        origin = Origin(f"http://127.0.0.1:{env['port']}")
        self.ws = ws_connect(
            f"ws://127.0.0.1:{env['port']}/ws/live/?topics={topics}",
            origin=origin,
            additional_headers={"Cookie": f"sessionid={_console_session(env)}"},
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for _ in self.ws:
                arrived = time.perf_counter()
                row = self.db.execute("SELECT version FROM ledger_account WHERE account_id = %s", [self.account])
                version = (row.fetchone() or [0])[0]
                self.hints.put((arrived, version))
        except Exception:
            pass  # closed

    def first_showing(self, version: int, timeout: float) -> float | None:
        """The arrival of the first hint on which the page would have seen `version` (hints
        about older versions are dropped)."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                arrived, seen = self.hints.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return None
            if seen >= version:
                return arrived

    def close(self) -> None:
        self.ws.close()
        self.db.close()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return (
        round(1000 * statistics.median(samples), 2),
        round(1000 * samples[max(0, int(len(samples) * 0.99) - 1)], 2),
    )


ENDPOINT_PATH = endpoint.PATH_PREFIX + "deposits/"


def p2(scale: float) -> dict[str, Any]:
    """Three runs, each of P2 and of the minimal endpoint back to back (the order alternating), on
    the same server: the run with the median ratio gives the figures, as for W1-W4."""
    with stack() as env:
        accounts = _open_accounts(env, 40)
        warm = max(10, int(200 * scale))
        _clients(env, accounts, warm, None)  # warm-up
        _clients(env, accounts, warm, None, ENDPOINT_PATH)
        per_client = max(20, int(2000 * scale))
        runs, ceilings = [], []
        for i in range(3):
            for which in ["p2", "endpoint"] if i % 2 == 0 else ["endpoint", "p2"]:
                if which == "p2":
                    runs.append(_clients(env, accounts, per_client, None))
                else:
                    ceilings.append(_clients(env, accounts, per_client, None, ENDPOINT_PATH))
    ratios = [r["cps"] / c["cps"] for r, c in zip(runs, ceilings, strict=True)]
    middle = sorted(range(3), key=ratios.__getitem__)[1]
    best, ceiling = runs[middle], ceilings[middle]
    return {
        "eps": round(best["cps"], 1),
        "runs": [round(r["cps"], 1) for r in runs],
        "p50_ms": round(best["p50_ms"], 2),
        "p99_ms": round(best["p99_ms"], 2),
        "errors": sum(r["errors"] for r in runs),
        "endpoint_eps": round(ceiling["cps"], 1),
        "endpoint_runs": [round(c["cps"], 1) for c in ceilings],
        "endpoint_p50_ms": round(ceiling["p50_ms"], 2),
        "endpoint_p99_ms": round(ceiling["p99_ms"], 2),
        "endpoint_errors": sum(c["errors"] for c in ceilings),
        "endpoint_ratio": round(ratios[middle], 3),
        "endpoint_run_ratios": [round(x, 3) for x in ratios],
        "web_processes": web_processes(),
    }


def p3(scale: float, p2_cps: float) -> dict[str, Any]:
    with stack() as env:
        accounts = _open_accounts(env, 40)
        probe_account = _open_accounts(env, 1)[0]
        listener = HintListener(env, f"stream:{probe_account}", probe_account)  # as the account page listens
        per_client = max(20, int(1000 * scale))
        rate = p2_cps / 2 / 4
        background = threading.Thread(target=_clients, args=(env, accounts, per_client, rate))
        background.start()
        freshness: list[float] = []
        pushed: list[float] = []
        missed = 0
        conn = http.client.HTTPConnection("127.0.0.1", env["port"], timeout=30)
        with psycopg.connect(common.conninfo(SCHEMA), autocommit=True) as db:
            while background.is_alive() and len(freshness) < max(20, int(300 * scale)):
                status, body = _request(
                    conn, "POST", f"/api/accounts/{probe_account}/deposits", {"amount": 1}, env["token"]
                )
                answered = time.perf_counter()
                assert status == 200, body
                while True:
                    row = db.execute(
                        "SELECT version FROM ledger_account WHERE account_id = %s", [probe_account]
                    ).fetchone()
                    if row and row[0] >= body["version"]:
                        break
                    if time.perf_counter() - answered > 10:
                        raise RuntimeError("a deposit did not reach the read model within 10 s")
                    time.sleep(0.001)
                visible = time.perf_counter()
                freshness.append(visible - answered)
                # The first hint on which a live page fetching the account would show the change.
                hinted = listener.first_showing(body["version"], timeout=5)
                if hinted is None:
                    missed += 1
                else:
                    pushed.append(max(hinted - answered, 0.0))  # heard before the response: no wait at all
                time.sleep(PROBE_PAUSE_S)
        background.join()
        listener.close()
    p50, p99 = _percentiles(freshness)
    result: dict[str, Any] = {
        "p50_ms": p50,
        "p99_ms": p99,
        "samples": len(freshness),
        "load_cps": round(p2_cps / 2, 1),
        "ws_samples": len(pushed),
        "ws_missed": missed,
    }
    if pushed:
        result["ws_p50_ms"], result["ws_p99_ms"] = _percentiles(pushed)
    return result
