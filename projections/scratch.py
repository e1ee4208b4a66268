"""Scratch copies of a projection's read-model tables, in a schema of their own, and the replay
that fills them: shared by rebuilds (which swap them in) and verification (which diffs them).

The copy has the live tables' columns, defaults, checks, primary keys and unique constraints,
but none of their plain indexes until `add_indexes`: a replay writes faster without them.
Handlers and `Projection.rebuild_batch` write to unqualified table names; `replaying()` points
the transaction's search_path at the scratch schema first, so the same code fills either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection
from psycopg import sql

from eventstore.records import Checkpoint, RecordedEvent
from eventstore.store import EventStore
from projections.base import Projection
from projections.models import Skip

BATCH_SIZE = settings.REBUILD_BATCH_EVENTS


def live_schema(table: str) -> str:
    """The schema the connection's search_path finds the live table in."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
            [table],
        )
        return cur.fetchone()[0]


def create(cur: Any, projection: Projection, schema: str) -> None:
    """The scratch schema with an empty copy of each of the projection's tables."""
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)).as_string(None))
    for table in projection.tables:
        live = sql.Identifier(live_schema(table), table)
        new = sql.Identifier(schema, table)
        cur.execute(
            sql.SQL(
                "CREATE TABLE {new} (LIKE {live} INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED "
                "INCLUDING CONSTRAINTS)"
            )
            .format(new=new, live=live)
            .as_string(None)
        )
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('p', 'u') ORDER BY contype, conname",
            [table],
        )
        for name, definition in cur.fetchall():
            cur.execute(
                sql.SQL("ALTER TABLE {new} ADD CONSTRAINT {name} {definition}")
                .format(new=new, name=sql.Identifier(name), definition=sql.SQL(definition))
                .as_string(None)
            )


def add_indexes(cur: Any, projection: Projection, schema: str) -> None:
    """The live tables' plain indexes, built once on the filled scratch tables."""
    for table in projection.tables:
        live = live_schema(table)
        cur.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = %s AND i.tablename = %s "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = (quote_ident(i.schemaname) || '.' "
            "|| quote_ident(i.indexname))::regclass)",
            [live, table],
        )
        new = sql.Identifier(schema, table).as_string(None)
        for _, definition in cur.fetchall():
            # CREATE [UNIQUE] INDEX name ON live.table USING ...: the same, on the scratch table
            head, rest = definition.split(" ON ", 1)
            using = rest.split(" USING ", 1)[1]
            cur.execute(f"{head} ON {new} USING {using}")


def drop(schema: str) -> None:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)).as_string(None))


@contextmanager
def replaying(cur: Any, schema: str) -> Iterator[None]:
    """Inside a transaction: unqualified table names mean the scratch tables until the block ends."""
    cur.execute("SELECT current_setting('search_path')")
    before = cur.fetchone()[0]
    cur.execute("SELECT set_config('search_path', %s, true)", [f"{sql.Identifier(schema).as_string(None)}, {before}"])
    try:
        yield
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", [before])


def skipped(projection: Projection) -> set:
    return set(Skip.objects.filter(projection=projection.name).values_list("event_id", flat=True))


class Page:
    def __init__(self, events: list[RecordedEvent], checkpoint: Checkpoint, full: bool) -> None:
        self.events, self.checkpoint, self.full = events, checkpoint, full


def replay_batch(
    cur: Any,
    projection: Projection,
    schema: str,
    after: Checkpoint,
    memo: dict[str, Any],
    skips: set,
    *,
    limit: int | None = None,
    until: dict[int, Checkpoint] | None = None,
) -> Page:
    """Inside a transaction: read the next batch of the projection's events (below the horizon)
    and apply it to the scratch tables. `until`, per bucket, leaves out events beyond a bucket's
    checkpoint (verification compares with live read models that stand at those checkpoints)."""
    limit = limit or BATCH_SIZE
    page = EventStore().read_all(after, limit=limit, types=projection.event_types, include_archived=True)
    events = [e for e in page.events if e.event_id not in skips]
    if until is not None:
        zero = Checkpoint(0, 0)
        events = [e for e in events if e.checkpoint <= until.get(e.bucket, zero)]
    if events:
        with replaying(cur, schema):
            projection.rebuild_batch(events, cur, memo)
    return Page(events, page.checkpoint, len(page.events) == limit)
