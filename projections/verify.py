"""Verification by replay: fold the log again into scratch tables and diff them with the live
read models, row by row.

The live read model of a projection stands at one checkpoint per bucket, and those move while
we replay. So: note the checkpoints, replay up to them (committing per batch, holding nothing),
then, in one transaction holding the projection's bucket locks (live batches wait a moment),
replay whatever the buckets gained meanwhile and diff the two at exactly the same place in
every bucket. Skipped events are left out, as the live runner leaves them out. The scratch
schema is dropped afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from psycopg import sql

from eventstore.records import BUCKETS, START, Checkpoint
from eventstore.store import EventStore
from projections import scratch
from projections.base import Projection, projection_registry
from projections.models import BucketCheckpoint
from projections.runner import ensure_checkpoints, lock_key

LOCK_TIMEOUT = "10s"
SHOWN = 20  # differing rows shown per table and side


@dataclass
class TableDiff:
    table: str
    rows: int  # rows in the live table
    only_live: list[dict[str, Any]] = field(default_factory=list)  # (the first SHOWN of them)
    only_replay: list[dict[str, Any]] = field(default_factory=list)
    count_only_live: int = 0
    count_only_replay: int = 0

    @property
    def clean(self) -> bool:
        return not (self.count_only_live or self.count_only_replay)


@dataclass
class Report:
    projection: str
    events: int
    tables: list[TableDiff]

    @property
    def clean(self) -> bool:
        return all(t.clean for t in self.tables)


def _checkpoints(name: str) -> dict[int, Checkpoint]:
    return {
        b: Checkpoint(tx, pos)
        for b, tx, pos in BucketCheckpoint.objects.filter(projection=name).values_list("bucket", "tx_id", "position")
    }


def verify(name: str) -> Report:
    projection = projection_registry.get(name)
    ensure_checkpoints(projection)
    schema = f"eventfold_verify_{os.getpid()}_{abs(hash(name)) % 10**6}"
    scratch.drop(schema)
    with transaction.atomic(), connection.cursor() as cur:
        scratch.create(cur, projection, schema)
    try:
        return _verify(projection, schema)
    finally:
        scratch.drop(schema)


def _verify(projection: Projection, schema: str) -> Report:
    skips = scratch.skipped(projection)
    memo: dict[str, Any] = {"complete": True}  # empty tables: the memo sees every row written
    noted = _checkpoints(projection.name)
    last = max(noted.values(), default=START)
    at, events = START, 0
    while True:  # up to the noted checkpoints, a batch per transaction
        with transaction.atomic(), connection.cursor() as cur:
            page = scratch.replay_batch(cur, projection, schema, at, memo, skips, until=noted)
        at, events = page.checkpoint, events + len(page.events)
        if not page.full or at >= last:
            break
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
        cur.execute(
            "SELECT count(pg_advisory_xact_lock(%s, b)) FROM generate_series(0, %s) AS b",
            [lock_key(projection.name), BUCKETS - 1],
        )
        now = _checkpoints(projection.name)
        for bucket, target in sorted(now.items()):
            events += _replay_bucket(cur, projection, schema, bucket, noted.get(bucket, START), target, memo, skips)
        tables = [_diff(cur, table, schema) for table in projection.tables]
        transaction.set_rollback(True)  # nothing to keep: the scratch schema goes next
    return Report(projection.name, events, tables)


def _replay_bucket(
    cur: Any, projection: Projection, schema: str, bucket: int, after: Checkpoint, until: Checkpoint, memo, skips
) -> int:
    """The bucket's events in (after, until], applied to the scratch tables."""
    n = 0
    while after < until:
        page = EventStore().read_all(
            after, limit=scratch.BATCH_SIZE, bucket=bucket, types=projection.event_types, include_archived=True
        )
        events = [e for e in page.events if e.checkpoint <= until and e.event_id not in skips]
        if events:
            with scratch.replaying(cur, schema):
                projection.rebuild_batch(events, cur, memo)
            n += len(events)
        if len(page.events) < scratch.BATCH_SIZE or page.checkpoint >= until:
            break
        after = page.checkpoint
    return n


def _diff(cur: Any, table: str, schema: str) -> TableDiff:
    """Rows in one table and not the other, ignoring identity columns (surrogate ids)."""
    live = scratch.live_schema(table)
    cur.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attidentity = '' ORDER BY a.attnum",
        [table],
    )
    columns = [r[0] for r in cur.fetchall()]
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    live_t, replay_t = sql.Identifier(live, table), sql.Identifier(schema, table)
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(live_t).as_string(None))
    diff = TableDiff(table, cur.fetchone()[0])
    for first, second, side in ((live_t, replay_t, "live"), (replay_t, live_t, "replay")):
        query = sql.SQL("SELECT {cols} FROM {a} EXCEPT ALL SELECT {cols} FROM {b}").format(cols=cols, a=first, b=second)
        cur.execute(sql.SQL("SELECT count(*) FROM ({}) AS d").format(query).as_string(None))
        count = cur.fetchone()[0]
        rows = []
        if count:
            cur.execute(sql.SQL("{} ORDER BY 1 LIMIT {}").format(query, sql.Literal(SHOWN)).as_string(None))
            rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        if side == "live":
            diff.count_only_live, diff.only_live = count, rows
        else:
            diff.count_only_replay, diff.only_replay = count, rows
    return diff
