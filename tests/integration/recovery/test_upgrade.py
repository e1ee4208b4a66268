"""docs/upgrading.md, run: a deployment from before issue 12 (one database role owning
everything, migrated to that day's migrations, events in its log) takes the steps the page gives
(a second role as owner, then `migrate` with both URLs) and comes out with its events intact,
every migration applied, the log append-only for the application role, and commands, a rebuild
and an export working.

On scratch roles and a database of their own, made and dropped here with the test server's
superuser, every step as its own `manage.py` process or SQL statement, as an operator runs them.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import orjson
import psycopg
import pytest

from tests.support import conninfo, database_server, find_superuser

ROOT = Path(__file__).resolve().parents[3]
RUN = f"{os.getpid()}_{uuid4().hex[:6]}"
OWNER, APP, DATABASE = f"ef_up_owner_{RUN}", f"ef_up_app_{RUN}", f"ef_up_{RUN}"
# A deployment from before issue 12: the code of the merge it began on (4eb1fec), and the last
# migration of each of the project's apps there.
MASTER_KEY = base64.urlsafe_b64encode(b"upgrade test master key, 32 byt.").decode()
BEFORE_ISSUE_12 = "4eb1fec27107f72a206c56e26fe25aee5162b150"
BEFORE_ISSUE_12_HEADS = {
    "eventstore": "0003_leaner_append",
    "projections": "0003_bucketcheckpoint",
    "core": "0003_processedcommand_result",
    "api": "0002_processedcommand_to_core",
    "ledger": "0001_initial",
}


def url(user: str) -> str:
    server = database_server()
    port = f":{server['port']}" if server["port"] else ""
    return f"postgresql://{quote(user)}@{quote(server['host'], safe='')}{port}/{DATABASE}"


def manage(*args: str, owner: str | None = OWNER, code: Path = ROOT) -> str:
    env = dict(os.environ, DATABASE_URL=url(APP), CELERY_BROKER_URL="memory://", EVENTFOLD_QUEUE_PREFIX=f"up{RUN}.")
    env["EVENTFOLD_MASTER_KEY"] = MASTER_KEY  # the same key for the old code and the new, whatever their cwd
    env.pop("TEST_DATABASE_NAME", None)
    env.pop("DATABASE_OWNER_URL", None)
    if owner:
        env["DATABASE_OWNER_URL"] = url(owner)
    run = subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=code, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, (args, run.stdout[-3000:], run.stderr[-3000:])
    return run.stdout


@pytest.fixture
def superuser() -> Iterator[psycopg.Connection]:
    found = find_superuser()
    assert found is not None, "this test makes scratch roles and a database: it needs a superuser"
    with psycopg.connect(conninfo("postgres", *found), autocommit=True) as conn:
        try:
            conn.execute(f'CREATE ROLE "{APP}" LOGIN')  # the one role of a deployment before issue 12
            conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{APP}"')
            yield conn
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            for role in (APP, OWNER):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def code_from_before_issue_12(tmp_path: Path) -> Path:
    """The project's files at BEFORE_ISSUE_12 (from git), run with today's virtualenv."""
    tree = tmp_path / "before-issue-12"
    tree.mkdir()
    files = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE_ISSUE_12], capture_output=True)
    assert files.returncode == 0, f"this test reads the code of {BEFORE_ISSUE_12} from git: {files.stderr!r}"
    subprocess.run(["tar", "-x", "-C", str(tree)], input=files.stdout, check=True)
    return tree


def applied() -> dict[str, str]:
    """Each app's last applied migration."""
    with psycopg.connect(conninfo(DATABASE, APP)) as conn:
        rows = conn.execute("SELECT app, max(name) FROM django_migrations GROUP BY app").fetchall()
    return {app: name for app, name in rows if app in BEFORE_ISSUE_12_HEADS}


def events() -> list[tuple]:
    with psycopg.connect(conninfo(DATABASE, APP)) as conn:
        return conn.execute("SELECT event_id, stream_id, version, data FROM eventstore_event ORDER BY 1").fetchall()


def v1_deposits() -> dict[str, dict]:
    """The deposits stored at schema version 1, by event id: their data as the rows hold it."""
    with psycopg.connect(conninfo(DATABASE, APP)) as conn:
        rows = conn.execute(
            "SELECT event_id, data FROM eventstore_event"
            " WHERE event_type = 'ledger.FundsDeposited' AND schema_version = 1"
        ).fetchall()
    return {str(event_id): data for event_id, data in rows}


READ_STREAMS = """
import orjson
from uuid import UUID
from eventstore.store import EventStore
wanted = set({ids!r})
out = {{}}
for stream_id in {streams!r}:
    for e in EventStore().read_stream(UUID(stream_id)):
        if str(e.event_id) in wanted:
            out[str(e.event_id)] = {{"schema_version": e.schema_version, "data": e.data,
                                    "stored_version": e.stored_version, "raw_data": e.raw_data}}
print(orjson.dumps(out).decode())
"""


def read_through_the_new_code(deposits: dict[str, dict]) -> dict[str, dict]:
    """Those events as the new code's `EventStore().read_stream` gives them, in a manage.py process."""
    with psycopg.connect(conninfo(DATABASE, APP)) as conn:
        streams = [
            str(s)
            for (s,) in conn.execute(
                "SELECT DISTINCT stream_id FROM eventstore_event WHERE event_id = ANY(%s::uuid[])", [list(deposits)]
            )
        ]
    out = manage("shell", "--no-imports", "-c", READ_STREAMS.format(ids=sorted(deposits), streams=sorted(streams)))
    read = orjson.loads(out.strip().splitlines()[-1])
    assert set(read) == set(deposits), "read_stream gives every v1 deposit"
    return read


def test_a_deployment_from_before_issue_12_upgrades_with_its_events(superuser, tmp_path):
    # The deployment as it was: the code from before issue 12 migrates its database and writes its
    # log (today's code would append through statements that need today's tables).
    code = code_from_before_issue_12(tmp_path)
    manage("migrate", "--noinput", owner=None, code=code)
    manage("seed_demo", "--accounts", "4", "--operations", "40", owner=None, code=code)
    assert applied() == BEFORE_ISSUE_12_HEADS
    before = events()
    assert len(before) > 40
    # docs/upgrading.md, step 1 (back up): the new code's export reads the old schema.
    backup = orjson.loads(manage("export_events", str(tmp_path / "before.jsonl"), "--json", owner=None))
    assert backup["events"] == len(before)

    # Step 4: the owner role, as a superuser in the database (steps 2 and 3, the new code and its
    # settings, are this checkout and the environment `manage` passes).
    superuser.execute(f'CREATE ROLE "{OWNER}" LOGIN')
    superuser.execute(f'GRANT "{APP}" TO "{OWNER}"')
    superuser.execute(f'ALTER DATABASE "{DATABASE}" OWNER TO "{OWNER}"')
    found = find_superuser()
    assert found is not None
    with psycopg.connect(conninfo(DATABASE, *found), autocommit=True) as conn:
        conn.execute(f'REASSIGN OWNED BY "{APP}" TO "{OWNER}"')
        conn.execute(f'ALTER ROLE "{APP}" NOSUPERUSER NOCREATEDB NOCREATEROLE')
    # Step 5: migrate with both URLs, then again (nothing left to do).
    assert "Granted the application role" in manage("migrate", "--noinput")
    manage("migrate", "--check", "--noinput")

    assert events() == before
    # The v2 deposit event needs no migration: the old code's v1 deposits read as v2 through
    # EventStore.read_stream, upcast with the default channel, while their rows keep version 1.
    deposits = v1_deposits()
    assert deposits, "the old code's demo data has deposits, written at schema version 1"
    for event_id, read in read_through_the_new_code(deposits).items():
        stored = deposits[event_id]
        assert read["schema_version"] == 2 and read["data"] == {**stored, "channel": "unknown"}, read
        assert read["stored_version"] == 1 and read["raw_data"] == stored, read
    assert v1_deposits() == deposits  # the rows themselves: untouched
    with psycopg.connect(conninfo(DATABASE, APP), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE eventstore_event SET version = version")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER TABLE eventstore_event DISABLE TRIGGER ALL")
    # Step 6 (the new code at work) and 7 (a rebuild), then an export of the whole.
    manage("seed_demo", "--accounts", "2", "--operations", "10")
    assert len(events()) > len(before)
    manage("rebuild_projection", "account_summary", "transfers")
    summary = orjson.loads(manage("export_events", str(tmp_path / "after.jsonl"), "--json"))
    assert summary["events"] == len(events())
