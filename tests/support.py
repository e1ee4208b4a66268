"""Small builders shared by the tests: event types, an aggregate, and helpers
for work in other threads and processes against the test database."""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID, uuid4

import psycopg
from django.db import connections
from pydantic import BaseModel, Field

from eventstore.aggregate import Aggregate
from eventstore.registry import event_type


@event_type("test.Opened")
class Opened(BaseModel):
    name: str


@event_type("test.Added")
class Added(BaseModel):
    amount: int = Field(gt=0)


@event_type("test.Noted")
class Noted(BaseModel):
    text: str = ""


class TallyState(BaseModel):
    name: str = ""
    total: int = 0
    count: int = 0


class Tally(Aggregate[TallyState]):
    """A tiny aggregate: a named running total."""

    category = "tally"

    @classmethod
    def initial_state(cls) -> TallyState:
        return TallyState()

    @staticmethod
    def evolve(state: TallyState, event: BaseModel) -> TallyState:
        match event:
            case Opened(name=name):
                return state.model_copy(update={"name": name})
            case Added(amount=amount):
                return state.model_copy(update={"total": state.total + amount, "count": state.count + 1})
        return state

    @classmethod
    def open(cls, name: str, id: UUID | None = None) -> Tally:
        tally = cls(id or uuid4())
        tally.record(Opened(name=name))
        return tally

    def add(self, amount: int) -> None:
        self.record(Added(amount=amount))


def use_database(name: str) -> None:
    """In a child process: set Django up against the test database `name`."""
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    django.setup()
    settings.DATABASES["default"]["NAME"] = name


def appender_process(db_name: str, index: int, appends: int, streams: int, barrier: Any, out: Any) -> None:
    """A writer process: `appends` single-event appends with exact expected versions over its own streams."""
    import random

    from django.db import connections

    use_database(db_name)
    from eventstore.store import EventStore

    store = EventStore()
    rng = random.Random(index)
    ids = [uuid4() for _ in range(streams)]
    versions = dict.fromkeys(ids, 0)
    barrier.wait()
    for i in range(appends):
        sid = rng.choice(ids)
        store.append(sid, "stress", [Added(amount=i + 1)], expected_version=versions[sid] or "no_stream")
        versions[sid] += 1
    out.put({str(k): v for k, v in versions.items()})
    connections.close_all()


def poller_process(db_name: str, start: tuple[int, int], expected: Any, out: Any) -> None:
    """A reader process: poll read_all from `start` until `expected.value` events were seen (or time out)."""
    import time

    from django.db import connections

    use_database(db_name)
    from eventstore.records import Checkpoint
    from eventstore.store import EventStore

    store = EventStore()
    checkpoint = Checkpoint(*start)
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = store.read_all(checkpoint, limit=500, categories=["stress"])
        seen += [(str(e.stream_id), e.version, e.position) for e in result.events]
        checkpoint = result.checkpoint
        if not result.events:
            if expected.value and len(seen) >= expected.value:
                break
            time.sleep(0.005)
    out.put(seen)
    connections.close_all()


def database_server() -> dict[str, str]:
    """Host and port of the test database's server (empty for the default)."""
    s = connections["default"].settings_dict
    return {"host": s.get("HOST") or "", "port": str(s.get("PORT") or "")}


def conninfo(dbname: str, user: str, password: str | None = None) -> str:
    """A libpq connection string to `dbname` on the test server as `user`."""
    server = {k: v for k, v in database_server().items() if v}
    return psycopg.conninfo.make_conninfo(dbname=dbname, user=user, password=password or None, **server)


def find_superuser() -> tuple[str, str | None] | None:
    """A superuser on the test server: the suite's own role (CI), or `postgres` (the embedded server)."""
    s = connections["default"].settings_dict
    for user, password in ((s.get("USER") or "postgres", s.get("PASSWORD")), ("postgres", None)):
        try:
            with psycopg.connect(conninfo("postgres", user, password), connect_timeout=5) as conn:
                row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        except psycopg.OperationalError:
            continue
        if row and row[0]:
            return user, password
    return None


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text scrape as {(sample name, labels): value}, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_value(samples: dict, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels (0 when the scrape has none)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
