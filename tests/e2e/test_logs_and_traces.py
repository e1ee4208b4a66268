"""The logs and traces of a live web process and a live worker, as production writes them.

`uvicorn app.asgi:application` and `celery -A app worker -B` started here with `LOG_FORMAT=json`,
`app` at DEBUG and `OTEL_TRACES_EXPORTER=console` (spans as JSON lines on standard output), on
queues of their own so that only this worker takes their work. Accounts with a distinctive owner
name, deposits, a transfer that completes and one that fails, a refused request: then every
line both processes wrote is JSON, none holds the owner's name, the worker's lines about the
transfer carry the correlation id of the request that asked for it, and the worker's spans
belong to that request's trace."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from app.celery import app as celery_app
from projections import status
from tests.conftest import wait_for, worker_database_url
from tests.integration.api.conftest import make_user

ROOT = Path(__file__).resolve().parents[2]
OWNER = "Zebulon Quaxworth"
SURNAME = "Quaxworth"
REQUEST_ID = "logs-and-traces-1"


class Live:
    """A web process and a worker process, and where each writes."""

    def __init__(self, port: int, web_log: Path, worker_log: Path) -> None:
        self.port, self.web_log, self.worker_log = port, web_log, worker_log

    def call(self, method: str, path: str, token: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")


def _environment(prefix: str, name: str) -> dict[str, str]:
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        EVENTFOLD_QUEUE_PREFIX=prefix,
        PGAPPNAME=name,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        LOG_LEVELS="app=DEBUG",
        OTEL_TRACES_EXPORTER="console",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    env.pop("TEST_DATABASE_NAME", None)
    return env


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def live(transactional_db, tmp_path) -> Iterator[Live]:
    prefix = f"test-logs-{os.getpid()}."
    queues = ",".join(prefix + q for q in settings.QUEUES)
    name = f"logs-{os.getpid()}"
    status.start_at_head()  # the worker applies only what this test appends
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web_cmd = [sys.executable, "-m", "uvicorn", "app.asgi:application", "--port", str(port), "--log-level", "info"]
    worker_cmd = [sys.executable, "-m", "celery", "-A", "app", "--quiet", "worker", "-B", "-s", str(tmp_path / "beat")]
    worker_cmd += ["-Q", queues, "-c", "2", "-n", f"{name}@%h"]
    with open(web_log, "wb") as web_out, open(worker_log, "wb") as worker_out:
        env = _environment(prefix, name)
        web = subprocess.Popen(web_cmd, env=env, cwd=ROOT, stdout=web_out, stderr=subprocess.STDOUT)
        worker = subprocess.Popen(worker_cmd, env=env, cwd=ROOT, stdout=worker_out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: celery_app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5),
            timeout=60,
            what="the worker to start",
        )

        def answers() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                return conn.getresponse().status in (200, 503)
            except OSError:
                return False

        wait_for(answers, timeout=60, what="the web process to start")
        yield Live(port, web_log, worker_log)
    finally:
        _stop(web)
        _stop(worker)  # its pool processes send their last spans as they end


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as JSON (a failure names the line)."""
    parsed = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line in {path.name}: {line[:300]}") from None
    return parsed


def _spans(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "context" in line and "name" in line]


def _records(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "event" in line and "level" in line]


def test_every_line_is_json_names_no_owner_and_carries_the_request_through_the_worker(live):
    token = make_user("logger", "operator")
    code, source = live.call("POST", "/api/accounts", token, {"owner": OWNER, "currency": "EUR"})
    assert code == 201, source
    code, target = live.call("POST", "/api/accounts", token, {"owner": f"Xanthe {SURNAME}", "currency": "EUR"})
    assert code == 201, target
    source_id, target_id = source["account_id"], target["account_id"]
    code, _ = live.call("POST", f"/api/accounts/{source_id}/deposits", token, {"amount": 100})
    assert code == 200
    code, refused = live.call("POST", "/api/accounts", token, {"owner": OWNER, "currency": "XTS"})
    assert code == 422 and refused["error"] == "validation_error"
    code, transfer = live.call(
        "POST",
        "/api/transfers",
        token,
        {"from_account": source_id, "to_account": target_id, "amount": 30},
        **{"X-Request-ID": REQUEST_ID},
    )
    assert code == 202, transfer
    code, failing = live.call(
        "POST", "/api/transfers", token, {"from_account": source_id, "to_account": target_id, "amount": 1000}
    )
    assert code == 202, failing

    def ended(transfer_id: str, wanted: str) -> bool:
        code, shown = live.call("GET", f"/api/transfers/{transfer_id}", token)
        return code == 200 and shown["status"] == wanted

    wait_for(lambda: ended(transfer["transfer_id"], "completed"), timeout=60, what="the transfer to complete")
    wait_for(lambda: ended(failing["transfer_id"], "failed"), timeout=60, what="the other transfer to fail")
    time.sleep(0.5)  # the last steps' spans leave the batch (OTEL_BSP_SCHEDULE_DELAY: 100 ms)
    live.call("GET", "/api/projections", token)

    web_text, worker_text = live.web_log.read_text(), live.worker_log.read_text()
    # the pair stops at the fixture's end; what was written so far is what is checked, and the
    # worker's lines after the transfers' end are none of this test's business
    web, worker = _lines(live.web_log), _lines(live.worker_log)
    assert SURNAME.lower() not in web_text.lower() and SURNAME.lower() not in worker_text.lower()

    # the web process: the transfer request's lines carry its request id and one correlation id
    asked = [r for r in _records(web) if r.get("request_id") == REQUEST_ID]
    assert asked, "no web line carries the request id"
    [correlation] = {r["correlation_id"] for r in asked}
    assert any(r["logger"] == "uvicorn.access" for r in asked)
    assert any(r["event"] == "command done" and r.get("command") == "RequestTransfer" for r in asked)

    # the worker: the process manager's commands for that transfer, in the same correlation, with
    # the event that caused each (its id, stream and position)
    steps = [r for r in _records(worker) if r.get("correlation_id") == correlation and r["event"] == "command done"]
    assert {r["command"] for r in steps} >= {"DebitForTransfer", "CreditFromTransfer", "SettleTransfer"}
    assert all({"causation_id", "stream", "position", "subscriber", "task_id"} <= set(r) for r in steps), steps[0]
    assert all(r["logger"] == "app.ledger.commands" for r in steps)

    # one trace: the request's server span in the web process, the worker's spans for its events
    [trace_id] = {r["trace_id"] for r in asked}
    [server] = [
        s for s in _spans(web) if s["kind"] == "SpanKind.SERVER" and s["context"]["trace_id"] == "0x" + trace_id
    ]
    assert server["name"] == "POST /api/transfers"
    assert server["resource"]["attributes"]["eventfold.process"] == "web"
    handled = [s for s in _spans(worker) if s["name"] == "process transfer_process"]
    mine = [s for s in handled if s["context"]["trace_id"] == "0x" + trace_id]
    assert {s["attributes"]["eventfold.event_type"] for s in mine} >= {
        "ledger.TransferRequested",
        "ledger.TransferDebited",
        "ledger.TransferCompleted",
    }
    assert all(s["resource"]["attributes"]["eventfold.process"] == "worker" for s in mine)
    assert {r["trace_id"] for r in steps} == {trace_id}
