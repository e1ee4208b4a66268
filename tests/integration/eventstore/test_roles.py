"""Append-only that does not depend on the application's goodwill (docs/deployment.md, "The
database roles").

An owner role runs the migrations and owns the log; the application role (DATABASE_URL) may only
INSERT and SELECT on it, and the triggers fire `ALWAYS`, so neither the application nor a superuser
in `session_replication_role = replica` changes history. These tests make two roles of their own on
a scratch database (names unique to this run, dropped afterwards), migrate it with `manage.py
migrate` given both URLs, and try every way around the rules as the application role; they need a
superuser connection (CI's `postgres`, the embedded server's `postgres` over its socket) and skip
without one. When the suite itself runs as two roles (the embedded server), the last test checks that.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.db.utils import DatabaseError

from app import embedded
from tests.support import Opened, conninfo, database_server, find_superuser

ROOT = Path(__file__).resolve().parents[3]
RUN = f"{os.getpid()}_{uuid4().hex[:6]}"
OWNER, APP, DATABASE = f"ef_roles_owner_{RUN}", f"ef_roles_app_{RUN}", f"ef_roles_{RUN}"


def url(dbname: str, user: str) -> str:
    server = database_server()
    port = f":{server['port']}" if server["port"] else ""
    return f"postgresql://{quote(user)}@{quote(server['host'], safe='')}{port}/{dbname}"


def manage(*args: str, app: str = APP, owner: str | None = OWNER, **env: str) -> subprocess.CompletedProcess:
    """`manage.py ARGS` on the scratch database: DATABASE_URL as `app`, DATABASE_OWNER_URL as `owner`."""
    environ = dict(os.environ, DATABASE_URL=url(DATABASE, app), CELERY_BROKER_URL="memory://", **env)
    environ.pop("TEST_DATABASE_NAME", None)
    environ.pop("DATABASE_OWNER_URL", None)
    if owner:
        environ["DATABASE_OWNER_URL"] = url(DATABASE, owner)
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def superuser() -> tuple[str, str | None]:
    found = find_superuser()
    assert found is not None, "these tests make scratch roles: they need a superuser on the test server"
    return found


@pytest.fixture(scope="module")
def scratch(superuser: tuple[str, str | None]) -> Iterator[str]:
    """Two roles and a database owned by the owner, as docs/deployment.md has a DBA make them,
    migrated with both URLs (twice: the second finds everything in place)."""
    with psycopg.connect(conninfo("postgres", *superuser), autocommit=True) as conn:
        try:
            conn.execute(f'CREATE ROLE "{OWNER}" LOGIN')
            conn.execute(f'CREATE ROLE "{APP}" LOGIN')
            conn.execute(f'GRANT "{APP}" TO "{OWNER}"')
            conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{OWNER}"')
            for _ in range(2):
                migrated = manage("migrate", "--noinput")
                assert migrated.returncode == 0, migrated.stderr[-4000:]
            yield DATABASE
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            for role in (APP, OWNER):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def as_app(scratch: str) -> Iterator[tuple[psycopg.Connection, object]]:
    """The application role on the scratch database, and a new stream of one event with a subject key."""
    with psycopg.connect(conninfo(scratch, APP), autocommit=True) as conn:
        sid = uuid4()
        conn.execute(
            "INSERT INTO eventstore_event (stream_id, category, bucket, version, event_id, event_type, "
            "schema_version, data) VALUES (%s, 'tally', 0, 1, %s, 'test.Opened', 1, '{}')",
            [sid, uuid4()],
        )
        conn.execute("INSERT INTO eventstore_subject_key (subject_id, wrapped_key) VALUES (%s, '\\x00')", [sid])
        yield conn, sid


def test_the_owner_owns_the_log_and_the_application_role_only_appends_and_reads(as_app):
    as_app, sid = as_app
    owner, can_insert, can_select, can_update, can_delete, can_truncate, can_trigger = as_app.execute(
        "SELECT tableowner, "
        + ", ".join(
            f"has_table_privilege(current_user, 'eventstore_event', '{p}')"
            for p in ("INSERT", "SELECT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
        )
        + " FROM pg_tables WHERE tablename = 'eventstore_event'"
    ).fetchone()
    assert owner == OWNER
    assert (can_insert, can_select) == (True, True)
    assert (can_update, can_delete, can_truncate, can_trigger) == (False, False, False, False)
    assert as_app.execute("SELECT count(*) FROM eventstore_event WHERE stream_id = %s", [sid]).fetchone()[0] == 1


REFUSED = [
    "UPDATE eventstore_event SET data = '{}'",
    "DELETE FROM eventstore_event",
    "TRUNCATE eventstore_event",
    "ALTER TABLE eventstore_event DISABLE TRIGGER ALL",
    "ALTER TABLE eventstore_event DISABLE TRIGGER eventstore_event_no_update_delete",
    "ALTER TABLE eventstore_event ENABLE REPLICA TRIGGER eventstore_event_no_update_delete",
    "DROP TRIGGER eventstore_event_no_update_delete ON eventstore_event",
    "ALTER TABLE eventstore_event RENAME TO eventstore_event_old",
    "ALTER TABLE eventstore_event ADD COLUMN note text",
    "DROP TABLE eventstore_event",
    "DROP SCHEMA public CASCADE",
    "CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger LANGUAGE plpgsql "
    "AS $$ BEGIN RETURN NEW; END $$",
    "SET session_replication_role = replica",
    "SELECT setval(pg_get_serial_sequence('eventstore_event', 'global_position'), 1)",
    "TRUNCATE eventstore_snapshot",
    "DELETE FROM eventstore_subject_key",
    "TRUNCATE eventstore_subject_key",
    "UPDATE eventstore_subject_key SET wrapped_key = '\\x01', forgotten_at = NULL",
    "DELETE FROM django_migrations",
    f'SET ROLE "{OWNER}"',
    f'GRANT "{OWNER}" TO CURRENT_USER',
]


@pytest.mark.parametrize("statement", REFUSED)
def test_the_application_role_cannot_change_history(as_app, statement):
    as_app, sid = as_app
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_app.transaction():
        as_app.execute(statement)
    kept = as_app.execute("SELECT count(*), min(data::text) FROM eventstore_event WHERE stream_id = %s", [sid])
    assert kept.fetchone() == (1, "{}")
    key = as_app.execute("SELECT wrapped_key FROM eventstore_subject_key WHERE subject_id = %s", [sid]).fetchone()
    assert key == (b"\x00",)


def test_the_application_role_forgets_a_subject_but_cannot_bring_it_back(as_app):
    as_app, sid = as_app
    forgotten = as_app.execute(
        "UPDATE eventstore_subject_key SET wrapped_key = NULL, forgotten_at = now() WHERE subject_id = %s", [sid]
    )
    assert forgotten.rowcount == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="forgotten"), as_app.transaction():
        as_app.execute(
            "UPDATE eventstore_subject_key SET wrapped_key = '\\x02', forgotten_at = NULL WHERE subject_id = %s", [sid]
        )


def test_a_superuser_in_replica_mode_cannot_change_history_either(scratch, superuser):
    with psycopg.connect(conninfo(scratch, *superuser), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        before = conn.execute("SELECT count(*) FROM eventstore_event").fetchone()[0]
        for statement in ("DELETE FROM eventstore_event", "UPDATE eventstore_event SET version = version"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), conn.transaction():
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM eventstore_event").fetchone()[0] == before


def test_the_ledger_runs_as_the_application_role(scratch):
    """Commands (appends, subject keys, snapshots), a blue/green rebuild (a scratch schema, the
    swap of tables the application role now owns) and verification, as the application role;
    and migrating again changes nothing."""
    env = {"EVENTSTORE_SNAPSHOT_EVERY": "5", "EVENTFOLD_QUEUE_PREFIX": f"roles{RUN}."}
    for args in (
        ("seed_demo", "--accounts", "3", "--operations", "60"),
        ("rebuild_projection", "account_summary"),
        ("verify_projections", "account_summary"),
        ("migrate", "--noinput"),
    ):
        run = manage(*args, **env)
        assert run.returncode == 0, (args, run.stdout[-2000:], run.stderr[-4000:])
    check = (
        "from django.db import connection\n"
        "from eventstore.repository import Repository\n"
        "from app.ledger.domain.account import Account\n"
        "cur = connection.cursor()\n"
        "cur.execute(\"SELECT stream_id, version FROM eventstore_snapshot WHERE category = 'account' \"\n"
        "            'ORDER BY version DESC LIMIT 1')\n"
        "sid, version = cur.fetchone()\n"
        "account = Repository(Account).load(sid)\n"
        "assert account.version >= version, (account.version, version)\n"
        "cur.execute('SELECT current_user, count(*) FROM ledger_account GROUP BY 1')\n"
        "print(*cur.fetchone())\n"
    )
    run = manage("shell", "-c", check, **env)
    assert run.returncode == 0, run.stderr[-4000:]
    user, accounts = run.stdout.strip().splitlines()[-1].split()
    assert user == APP and int(accounts) >= 3


def test_migrate_refuses_an_application_role_that_could_change_history(scratch, superuser):
    risky = f"ef_roles_risky_{RUN}"
    with psycopg.connect(conninfo("postgres", *superuser), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{risky}" LOGIN CREATEROLE')
        conn.execute(f'GRANT "{OWNER}" TO "{risky}"')
        try:
            run = manage("migrate", "--noinput", app=risky)
        finally:
            conn.execute(f'DROP ROLE "{risky}"')
    assert run.returncode != 0
    assert "CREATEROLE" in run.stderr and f"member of the owner role {OWNER}" in run.stderr, run.stderr[-4000:]


def test_with_one_url_migrate_runs_as_that_role_and_grants_nothing(scratch):
    run = manage("migrate", "--noinput", app=OWNER, owner=None)
    assert run.returncode == 0, run.stderr[-4000:]


def test_the_embedded_servers_roles_can_be_made_again(scratch, superuser):
    """`make run` makes its roles and database on every start: what exists already is kept as it
    is (roles are cluster-wide: another checkout may have made them)."""
    with psycopg.connect(conninfo("postgres", *superuser), autocommit=True) as conn:
        for _ in range(2):
            embedded.ensure_roles(conn, owner=OWNER, app=APP)
            embedded.ensure_database(conn, scratch, owner=OWNER)
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba), pg_has_role(%s, %s, 'MEMBER'), pg_has_role(%s, %s, 'MEMBER') "
            "FROM pg_database WHERE datname = %s",
            [OWNER, APP, APP, OWNER, scratch],
        ).fetchone()
    assert row == (OWNER, True, False)


def test_the_log_refuses_to_forget_how_to_forget(store):
    """The subject-key guard holds for every role: a key is only ever destroyed, never replaced,
    restored or deleted."""
    sid = uuid4()
    store.append(sid, "tally", [Opened(name="x")])
    store.subject_keys.store(sid, os.urandom(32))
    for statement in (
        "UPDATE eventstore_subject_key SET wrapped_key = '\\x01' WHERE subject_id = %s",
        "DELETE FROM eventstore_subject_key WHERE subject_id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match=r"subject key|permission denied"),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            cur.execute(statement, [sid])
    assert store.subject_keys.forget(sid)
    with pytest.raises(DatabaseError, match="forgotten"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE eventstore_subject_key SET wrapped_key = '\\x01', forgotten_at = NULL WHERE subject_id = %s", [sid]
        )
    assert store.subject_keys.get([sid]) == {sid: None}


def test_the_suite_runs_as_the_application_role_when_there_are_two(transactional_db):
    """With two roles configured (the embedded server), the tests' own connection is the
    application role: everything else in the suite ran without the owner's rights. With one
    (DATABASE_URL only, as CI's second run has it), that one role owns the log, as before."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT current_user = tableowner, has_table_privilege('eventstore_event', 'UPDATE') "
            "FROM pg_tables WHERE tablename = 'eventstore_event'"
        )
        owns, may_update = cur.fetchone()
    if "owner" in connections:
        assert (owns, may_update) == (False, False)
    else:
        assert owns
