"""Forgetting for real: an account's owner, named by every path that can name them (the
console's form, keyed API requests, transfers both ways, a snapshot, the state caches of the web
and the worker), forgotten through the API; then a whole `pg_dump` of the database and every log
line of the web (this process) and of the worker hold the name nowhere, everything else about the
account keeps working, and a rebuild after forgetting yields the same read models.

The same search over the dump taken just before forgetting finds the name: the search can fail."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.urls import reverse

from app.ledger.domain.account import Account
from eventstore.personal_data import FORGOTTEN
from eventstore.repository import Repository
from eventstore.roles import OWNER_ALIAS
from eventstore.store import EventStore
from projections import runner
from tests.conftest import start_worker, wait_for
from tests.integration.api.conftest import open_account
from tests.integration.console.clients import console_client
from tests.integration.projections.conftest import _set_consuming, _stop_consuming, replay_whole_log
from tests.integration.transfers.conftest import wait_finished

NAME = "Zebulon Quixotica-Forgetmenot"
MARKS = ("zebulon", "quixotica", "forgetmenot")  # each part alone, in any case
PROJECTIONS = ("account_summary", "account_entries", "transfers", "daily_totals")


def pg_dump_binary() -> str:
    """A pg_dump of the server's major version: the embedded server's own, or the system's."""
    with connection.cursor() as cur:
        cur.execute("SHOW server_version_num")
        major = int(cur.fetchone()[0]) // 10000
    candidates = [shutil.which("pg_dump"), f"/usr/lib/postgresql/{major}/bin/pg_dump"]
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.insert(0, str(POSTGRES_BIN_PATH / "pg_dump"))
    except ImportError:
        pass
    for path in filter(None, candidates):
        if os.access(path, os.X_OK):
            version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
            if re.search(rf"\b{major}\.\d+", version):
                return path
    raise AssertionError(f"no pg_dump of PostgreSQL {major} among {candidates}")


def dump() -> str:
    """The whole test database as SQL (as the role that owns the log, which can read everything)."""
    s = settings.DATABASES[OWNER_ALIAS] if OWNER_ALIAS in settings.DATABASES else settings.DATABASES["default"]
    env = dict(os.environ, PGPASSWORD=str(s.get("PASSWORD") or ""))
    command = [pg_dump_binary(), "--no-owner", "-d", connections["default"].settings_dict["NAME"], "-U", s["USER"]]
    if s.get("HOST"):
        command += ["-h", str(s["HOST"])]
    if s.get("PORT"):
        command += ["-p", str(s["PORT"])]
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def named(text: str) -> list[str]:
    """The lines of `text` that hold any part of the name."""
    return [line[:200] for line in text.splitlines() if any(mark in line.lower() for mark in MARKS)]


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.__dict__!r}")


@pytest.fixture
def web_logs() -> Iterator[Captured]:
    """Every record logged in this process (the web's requests run here), at the levels configured."""
    handler = Captured()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def loud_worker(worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A worker of this test's own, logging at DEBUG (every routine task, every step of the process
    manager; not `django.db.backends`, which the docs tell to keep above DEBUG on real data), in
    place of the session's worker, which stops consuming meanwhile. Yields its log file."""
    session_worker = f"test-{os.getpid()}@{os.uname().nodename}"
    _stop_consuming(session_worker)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LOG_LEVELS", "django.db.backends=INFO")
    log = tmp_path / "worker.log"
    proc = start_worker(f"forget-{os.getpid()}", log)
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        _set_consuming(session_worker, True)


def caught_up() -> bool:
    return not runner.lagging_buckets()


def read_models(accounts: list[UUID], transfers: list[UUID]) -> dict[str, list[Any]]:
    """The rows of these accounts and transfers in every ledger read model (surrogate ids left out)."""
    queries = {
        "ledger_account": "SELECT * FROM ledger_account WHERE account_id = ANY(%s) ORDER BY account_id",
        "ledger_entry": "SELECT account_id, version, kind, amount, balance_after, reference, transfer_id, position, "
        "recorded_at FROM ledger_entry WHERE account_id = ANY(%s) ORDER BY account_id, version",
        "ledger_daily_account": "SELECT account_id, day, currency, deposits, withdrawals, last_version "
        "FROM ledger_daily_account WHERE account_id = ANY(%s) ORDER BY account_id, day",
        "ledger_daily_account_currency": "SELECT * FROM ledger_daily_account_currency WHERE account_id = ANY(%s) "
        "ORDER BY account_id",
    }
    found = {}
    with connection.cursor() as cur:
        for table, query in queries.items():
            cur.execute(query, [accounts])
            found[table] = cur.fetchall()
        cur.execute("SELECT * FROM ledger_transfer WHERE transfer_id = ANY(%s) ORDER BY transfer_id", [transfers])
        found["ledger_transfer"] = cur.fetchall()
    return found


def console_command(client: Any, page: str, form: str, action: str, data: dict[str, str]) -> Any:
    html = client.get(page).content.decode()
    command_id = re.search(rf'id="form-{form}".*?name="command_id" value="([^"]+)"', html, re.S)
    assert command_id, f"no {form} form on {page}"
    response = client.post(action, {"command_id": command_id.group(1), **data})
    assert response.status_code == 302, response.content.decode()[-500:]
    return response


def test_after_forgetting_the_name_is_nowhere_and_the_rest_keeps_working(loud_worker, admin, operator, web_logs):
    replay_whole_log()  # the live read models hold the whole log, as a rebuild will
    console = console_client("olga-console", "operator")
    opened = console_command(
        console,
        reverse("console:accounts"),
        "open",
        reverse("console:account_open"),
        {"owner": NAME, "currency": "EUR", "overdraft_limit": "0"},
    )
    account = UUID(opened.url.split("?")[0].rstrip("/").rsplit("/", 1)[1])
    other = UUID(open_account(operator, "Otto Other"))
    keyed = {"Idempotency-Key": "zebulon-quixotica-forgetmenot-1"}  # a key naming them, as clients do
    assert operator.post(f"/api/accounts/{account}/deposits", {"amount": 10_000}, **keyed).status_code == 200
    assert operator.post(f"/api/accounts/{other}/deposits", {"amount": 5_000}).status_code == 200
    out = {"from_account": str(account), "to_account": str(other), "amount": 1_500}
    back = {"from_account": str(other), "to_account": str(account), "amount": 700}
    transfers = [
        UUID(operator.post("/api/transfers", out, **{"Idempotency-Key": "quixotica-pays-otto"}).json()["transfer_id"]),
        UUID(operator.post("/api/transfers", back).json()["transfer_id"]),
    ]
    page = reverse("console:account", args=[account])
    for action, data in (("deposit", {"amount": "2.50"}), ("freeze", {}), ("unfreeze", {})):
        wait_for(caught_up, timeout=60, what="the read models to catch up")  # the page shows the forms it may
        console_command(console, page, action, reverse("console:account_action", args=[account, action]), data)
    assert NAME in console.get(reverse("console:accounts"), {"owner": "quixotica"}).content.decode()
    for transfer in transfers:
        assert wait_finished(transfer).status == "completed"
    repository = Repository(Account, EventStore())
    loaded = repository.load(account)
    repository.take_snapshot(loaded, EventStore().read_stream(account, backwards=True, limit=1)[0].event_id)
    wait_for(caught_up, timeout=60, what="the read models to catch up")

    before = named(dump())
    assert before, "the dump before forgetting should name them: the search could not fail"
    forgotten = admin.post(f"/api/accounts/{account}/forget")
    assert forgotten.status_code == 200 and forgotten.json()["already_forgotten"] is False

    # everything else about the account keeps working, on the web and in the worker
    assert operator.post(f"/api/accounts/{account}/deposits", {"amount": 300}).status_code == 200
    after = operator.post("/api/transfers", {**out, "amount": 100}, **{"Idempotency-Key": "after"})
    transfers.append(UUID(after.json()["transfer_id"]))
    assert wait_finished(transfers[-1]).status == "completed"
    wait_for(caught_up, timeout=60, what="the read models to catch up")
    summary = operator.get(f"/api/accounts/{account}").json()
    assert (summary["owner"], summary["balance"]) == (FORGOTTEN, 10_000 - 1_500 + 700 + 250 + 300 - 100)
    assert len(operator.get(f"/api/accounts/{account}/entries", limit=50).json()["items"]) == 6
    assert console.get(page).status_code == 200

    assert named(dump()) == [], "the name is still in the database"
    assert named("\n".join(web_logs.lines)) == [] and named(loud_worker.read_text(errors="replace")) == []
    assert any(str(account) in line for line in web_logs.lines)  # the capture did see the forgetting
    assert str(transfers[0]) in loud_worker.read_text()  # and the worker logged this test's work

    live = read_models([account, other], transfers)
    for name in PROJECTIONS:
        call_command("rebuild_projection", name)
    assert read_models([account, other], transfers) == live
    call_command("verify_projections", *PROJECTIONS)
    assert named(dump()) == []
