"""No request inherits a dirty connection: refusals of every kind, then successes, through the
same worker thread of a real ASGI server (uvicorn, with a one-thread pool behind the async views,
see one_thread_asgi.py), over real HTTP. Django's test client runs each request differently and
does not show what one request leaves on a thread's connection for the next."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.core.signals import request_started
from django.db import connection, connections
from django.utils import timezone

from app.core.connections import start_clean
from app.core.models import ProcessedCommand
from app.core.tasks import sweep_idempotency
from app.core.threads import in_thread
from app.ledger import commands
from eventstore.personal_data import SubjectKeys
from eventstore.store import EventStore
from tests.conftest import worker_database_url
from tests.integration.api.conftest import make_user

ROOT = Path(__file__).resolve().parents[3]
SERVER_NAME = f"conn-test-server-{os.getpid()}"  # its sessions' application_name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    """uvicorn on the test database, every blocking call of the API views on one thread."""
    port = free_port()
    log = tmp_path_factory.mktemp("conn-server") / "uvicorn.log"
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX,
        PGAPPNAME=SERVER_NAME,
    )
    env.pop("TEST_DATABASE_NAME", None)
    app = "tests.integration.api.one_thread_asgi:application"
    cmd = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/api/openapi.json")
            if probe.getresponse().status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the ASGI server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log_text = log.read_text()
    assert "Traceback" not in log_text and "was left" not in log_text, log_text[-3000:]


class Http:
    """Real HTTP requests to the live server with one user's bearer token."""

    def __init__(self, address: str, token: str) -> None:
        self.address, self.token = address, token

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(self.address, timeout=30)
        sent = {"Authorization": f"Bearer {self.token}", **{k.replace("_", "-"): v for k, v in headers.items()}}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def post(self, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, Any]]:
        return self.call("POST", path, body, **headers)

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return self.call("GET", path)


def expect(answer: tuple[int, dict[str, Any]], status: int, code: str | None = None) -> dict[str, Any]:
    got, body = answer
    assert got == status, (got, body)
    if code is not None:
        assert body["error"] == code, body
    return body


def successes(api: Http, round_: str) -> None:
    """Every way a command or a read uses the connection: the personal-data append (a
    transaction), a plain append (autocommit), a keyed one (in the idempotency transaction) and its
    repeat, a read of the log."""
    opened = expect(api.post("/api/accounts", {"owner": f"Ann {round_}", "currency": "EUR"}), 201)
    account = opened["account_id"]
    deposit = expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 100}), 200)
    assert deposit["version"] == 2
    keyed = {"Idempotency-Key": f"ok-{round_}"}
    first = expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, **keyed), 200)
    again = expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, **keyed), 200)
    assert first == again and first["version"] == 3
    kept = expect(
        api.post("/api/accounts", {"owner": f"Bo {round_}", "currency": "EUR"}, Idempotency_Key=f"open-{round_}"), 201
    )
    assert kept["version"] == 1
    events = expect(api.get(f"/api/streams/{account}/events"), 200)
    assert [e["type"] for e in events["items"]] == [
        "ledger.AccountOpened",
        "ledger.FundsDeposited",
        "ledger.FundsDeposited",
    ]
    assert events["items"][0]["data"]["owner"] == f"Ann {round_}"


def server_sessions() -> list[tuple[str, str]]:
    """The live server's database sessions: (state, query)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            [SERVER_NAME],
        )
        return cur.fetchall()


def test_every_kind_of_refusal_then_successes_on_the_same_thread(live, transactional_db):
    api = Http(live, make_user("olga", "operator"))
    successes(api, "start")
    account = expect(api.post("/api/accounts", {"owner": "Cy", "currency": "EUR"}), 201)["account_id"]
    money = f"/api/accounts/{account}/deposits"
    expect(api.post(money, {"amount": 10}), 200)  # version 2: If-Match "1" is stale
    forgotten = expect(api.post("/api/accounts", {"owner": "Di", "currency": "EUR"}, Idempotency_Key="di"), 201)
    unknown = uuid4()

    def keyed(name: str) -> dict[str, str]:
        return {"Idempotency-Key": f"{name}-{uuid4()}"}

    def forget_and_reopen() -> tuple[int, dict[str, Any]]:
        # the key's record gone (as after its 24 hours) and the owner forgotten: opening again
        # would store the forgotten owner's name anew
        SubjectKeys().forget(UUID(forgotten["account_id"]))
        ProcessedCommand.objects.filter(key="di").delete()
        return api.post("/api/accounts", {"owner": "Di", "currency": "EUR"}, Idempotency_Key="di")

    refusals: list[tuple[str, Any, int, str]] = [
        ("a business rule", lambda: api.post(f"/api/accounts/{account}/withdrawals", {"amount": 10**6}), 422,
         "insufficient_funds"),
        ("a keyed business rule",
         lambda: api.post(f"/api/accounts/{account}/withdrawals", {"amount": 10**6}, **keyed("rule")), 422,
         "insufficient_funds"),
        ("an unknown account", lambda: api.post(f"/api/accounts/{unknown}/deposits", {"amount": 1}), 404, "not_found"),
        ("a keyed unknown account",
         lambda: api.post(f"/api/accounts/{unknown}/deposits", {"amount": 1}, **keyed("404")), 404, "not_found"),
        ("an unknown transfer account",
         lambda: api.post("/api/transfers", {"from_account": account, "to_account": str(unknown), "amount": 1}), 404,
         "not_found"),
        ("a stale If-Match", lambda: api.post(money, {"amount": 1}, If_Match='"1"'), 409, "concurrency_conflict"),
        ("a keyed stale If-Match", lambda: api.post(money, {"amount": 1}, If_Match='"1"', **keyed("if")), 409,
         "concurrency_conflict"),
        ("a reused key (deposit)", lambda: api.post(money, {"amount": 2}, Idempotency_Key="ok-start"), 409,
         "idempotency_key_reused"),
        ("a reused key (account)",
         lambda: api.post("/api/accounts", {"owner": "Other", "currency": "EUR"}, Idempotency_Key="ok-start"), 409,
         "idempotency_key_reused"),
        ("an invalid body", lambda: api.post(money, {"amount": -1}), 422, "validation_error"),
        ("an invalid key", lambda: api.post(money, {"amount": 1}, Idempotency_Key="k" * 256), 422,
         "validation_error"),
        ("a forgotten owner", forget_and_reopen, 422, "subject_forgotten"),
    ]  # fmt: skip
    for round_, (what, refused, status, code) in enumerate(refusals):
        expect(refused(), status, code)
        successes(api, f"{round_} after {what}")
    # between requests the server's connections are idle, never left in a transaction
    sessions = server_sessions()
    assert sessions and all(state == "idle" for state, _ in sessions), sessions


def test_a_key_used_again_after_its_24_hours_gets_the_first_result(live, transactional_db):
    api = Http(live, make_user("kay", "operator"))
    opened = expect(api.post("/api/accounts", {"owner": "Kay", "currency": "EUR"}, Idempotency_Key="open-1"), 201)
    account = opened["account_id"]
    first = expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, Idempotency_Key="k-old"), 200)
    expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 7}), 200)  # the stream moves on
    ProcessedCommand.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = expect(api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, Idempotency_Key="k-old"), 200)
    assert again == first
    reopened = expect(api.post("/api/accounts", {"owner": "Kay", "currency": "EUR"}, Idempotency_Key="open-1"), 201)
    assert reopened == opened
    events = EventStore().read_stream(UUID(account))
    assert [e.type for e in events] == ["ledger.AccountOpened", "ledger.FundsDeposited", "ledger.FundsDeposited"]
    successes(api, "after the 24 hours")


def leave_dirty(how: str) -> None:
    """Leave this thread's connection inside a transaction, as work that talks to psycopg
    directly could, without Django knowing."""
    connection.ensure_connection()
    raw = connection.connection
    raw.execute("BEGIN")
    if how == "failed":
        with pytest.raises(psycopg.errors.DivisionByZero):
            raw.execute("SELECT 1 / 0")
    assert raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def fresh_query() -> tuple[int, str]:
    """An ORM query, and the transaction status it leaves."""
    count = ProcessedCommand.objects.count()
    return count, connection.connection.info.transaction_status.name


@pytest.mark.parametrize("how", ["open", "failed"])
def test_work_in_an_api_thread_starts_on_a_clean_connection(transactional_db, caplog, how):
    async def two_calls() -> tuple[int, str]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))  # both on one thread
        await in_thread(leave_dirty)(how)
        try:
            return await in_thread(fresh_query)()
        finally:
            await in_thread(connections.close_all)()

    assert asyncio.run(two_calls()) == (0, "IDLE")  # (asyncio.run shuts the pool down)
    assert "was left" in caplog.text


@pytest.mark.parametrize("how", ["open", "failed"])
@pytest.mark.parametrize("before", ["request", "task"])
def test_every_request_and_task_starts_on_a_clean_connection(transactional_db, caplog, how, before):
    leave_dirty(how)
    try:
        if before == "request":
            request_started.send(sender=None, scope={})
        else:
            task_prerun.send(sender=sweep_idempotency, task_id="t", task=sweep_idempotency, args=(), kwargs={})
        assert fresh_query() == (0, "IDLE")
        assert "was left" in caplog.text
    finally:  # whatever happened, the test database's flush needs a usable connection
        if connection.connection is not None and connection.connection.info.transaction_status:
            connection.close()


def test_a_connection_the_server_dropped_answers_503_and_the_next_work_gets_a_new_one(transactional_db, caplog):
    store = EventStore()
    store.stream_version(uuid4())  # this thread's connection is open, and idle
    with psycopg.connect(worker_database_url(), autocommit=True) as other:  # a restart, a failover, a kill
        other.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    try:
        with pytest.raises(psycopg.OperationalError) as raised:
            store.read_stream(uuid4())  # the store's own psycopg cursor: Django never hears of the error
        answer = commands.refusal(raised.value)
        assert answer is not None and (answer.status, answer.code) == (503, "unavailable"), answer
        start_clean()
        assert fresh_query() == (0, "IDLE")
        assert "was left" in caplog.text
    finally:
        if connection.connection is not None and connection.connection.info.transaction_status:
            connection.close()
