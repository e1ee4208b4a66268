"""Shared pieces of the benchmark: the payload, scratch schemas, the machine.

Every workload runs in a fresh scratch schema (the event store's tables made by
its own migration SQL, plus the raw reference table), so "streams are new at
the start of each workload" and W4 reads exactly the log it wrote.
"""

from __future__ import annotations

import os
import platform
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from pydantic import BaseModel

from eventstore import hooks
from eventstore.registry import event_type

SCHEMA = "eventfold_bench"
SEED = 20261126

RAW_TABLE = """
CREATE TABLE events (
    global_position bigserial PRIMARY KEY,
    stream_id text NOT NULL,
    version int NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)
"""


class Amount(BaseModel):
    value: int
    currency: str


@event_type("bench.Recorded")
class Recorded(BaseModel):
    """The benchmark's ~200-byte event."""

    seq: int
    account_id: str
    amount: Amount
    memo: str
    at: str
    tags: list[str]


def payloads(n: int, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    return [
        {
            "seq": i,
            "account_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "amount": {"value": rng.randrange(1, 10_000_000), "currency": "EUR"},
            "memo": "".join(rng.choice(letters) for _ in range(24)),
            "at": (start + timedelta(seconds=i)).isoformat(),
            "tags": ["bench", rng.choice(["a", "b", "c"]), f"t{i % 10}"],
        }
        for i in range(n)
    ]


def metadata(seed: int = SEED) -> dict:
    rng = random.Random(seed + 1)
    return {"correlation_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "schema_version": 1}


def stream_ids(n: int, seed: int) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(n)]


def conninfo(search_path: str | None = f"{SCHEMA},public") -> str:
    """A libpq connection string for the configured database, with `search_path` (None: the server's)."""
    s = connections["default"].settings_dict
    parts = {
        "dbname": s["NAME"],
        "user": s.get("USER"),
        "password": s.get("PASSWORD"),
        "host": s.get("HOST"),
        "port": s.get("PORT"),
        "options": f"-c search_path={search_path}" if search_path else None,
    }
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v})


@contextmanager
def scratch(search_path: str = f"{SCHEMA},public") -> Iterator[None]:
    """Until the block ends, Django's default connection (so the event store, `migrate`, a rebuild)
    works in the scratch schema, and no append or swap wakes anything: a scratch log is nobody
    else's business.

    Each connection Django opens in the block sets `search_path` first (Django's
    `connection_created` signal); the database settings stay untouched.
    """

    def point_at_scratch(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        if connection.alias == "default":
            with connection.cursor() as cur:
                cur.execute("SELECT set_config('search_path', %s, false)", [search_path])

    connections["default"].close()
    connection_created.connect(point_at_scratch, weak=False)
    try:
        with hooks.suspended():
            yield
    finally:
        connection_created.disconnect(point_at_scratch)
        connections["default"].close()


def migrate_scratch() -> None:
    """`migrate` in the scratch schema (inside `scratch()`, as the role that made it), its rebuilds
    numbered from a random id above a billion. A rebuild's shadow schema (`eventfold_rebuild_<id>`)
    lives beside the scratch schema, not in it: numbered from 1, the benchmark's rebuilds met the
    shadow schemas of the application's own rebuilds in the same database, or one that a killed
    run left behind ("schema eventfold_rebuild_1 already exists")."""
    from django.core.management import call_command

    call_command("migrate", database="default", verbosity=0)
    with connections["default"].cursor() as cur:
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('projections_rebuild', 'id'), %s)",
            [1_000_000_000 + random.SystemRandom().randrange(1_000_000_000)],
        )


def reset_schema() -> None:
    """A fresh scratch schema with the event store's tables and the raw reference table."""
    from importlib import import_module

    migration = import_module("eventstore.migrations.0001_initial")
    leaner = import_module("eventstore.migrations.0003_leaner_append")
    tombstones = import_module("eventstore.migrations.0005_tombstones")
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(migration.EVENTS)
        for statement in leaner.FORWARD:
            conn.execute(statement)
        conn.execute(migration.SNAPSHOTS)
        conn.execute(tombstones.TOMBSTONES)
        conn.execute(RAW_TABLE)


def drop_schema() -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _show(conn: psycopg.Connection, setting: str) -> str:
    row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None  # SHOW answers one row
    return row[0]


def machine() -> dict:
    with psycopg.connect(conninfo()) as conn:
        server = _show(conn, "server_version")
        fsync = _show(conn, "fsync")
        sync_commit = _show(conn, "synchronous_commit")
    return {
        "cores": os.cpu_count(),
        "postgresql": server,
        "fsync": fsync,
        "synchronous_commit": sync_commit,
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "database": settings.DATABASES["default"].get("HOST") or "local socket",
    }
