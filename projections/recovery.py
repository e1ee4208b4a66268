"""What follows an import of the log (eventstore.backup): process managers start at the head,
projections rebuild.

Process managers issue commands: handling imported history again would act twice on events
the old deployment acted on already (and append what it appended). So none runs during an
import (`processes_held`: the import holds their locks), and every batch of an import moves
their checkpoints past its own events in the same transaction as the insert (`follow_import`):
no process manager ever sees an imported event as new, even with workers running meanwhile.
Projections only fold events into their own tables, so they replay everything: a blue/green
rebuild of each one that is not at the head (`behind`). Streams the export says were archived
come back hot and move to the archive again once every subscriber has passed them
(`archive_as_exported`), as `archive_streams` would move them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.db import connection

from eventstore import roles
from eventstore.records import BUCKETS
from eventstore.store import EventStore
from projections import runner
from projections.archiving import archivable
from projections.base import Subscriber, projection_registry
from projections.processes import advisory_key, process_registry
from projections.runner import ensure_checkpoints

# Each bucket's last event appended by this transaction (one import batch: its events share the
# transaction id, so the last in read order is the highest position).
PAST_THIS_TRANSACTION = """
UPDATE projections_checkpoint c
SET tx_id = pg_current_xact_id()::text::int8, position = h.position, updated_at = now()
FROM (
    SELECT bucket, max(global_position) AS position FROM eventstore_event
    WHERE tx_id = pg_current_xact_id() GROUP BY bucket
) AS h
WHERE c.bucket = h.bucket AND c.projection = ANY(%s)
"""


def prepare_processes() -> list[str]:
    """The process managers' checkpoint rows, made now (at zero) so each import batch can move them."""
    names = []
    for process in process_registry.all():
        ensure_checkpoints(process, force=True)
        names.append(process.name)
    return names


@contextmanager
def processes_held() -> Iterator[None]:
    """No process manager runs while the block does: this session holds every (process manager,
    bucket) lock that a run takes (`processes.run`), waiting first for the runs under way. Without
    it a run that read its checkpoint just before an import transaction committed would read that
    transaction's events after it, as new, and act on them."""
    keys = [(advisory_key(p.name), bucket) for p in process_registry.all() for bucket in range(BUCKETS)]
    with connection.cursor() as cur:
        for key, bucket in keys:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", [key, bucket])
    try:
        yield
    finally:
        with connection.cursor() as cur:
            for key, bucket in keys:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [key, bucket])


def follow_import(names: list[str]) -> Any:
    """The import's `on_batch`: the named process managers' checkpoints past the batch's events."""

    def on_batch(cur: Any) -> None:
        if names:
            cur.execute(PAST_THIS_TRANSACTION, [names])

    return on_batch


# Whether a subscriber has an event of its types after its checkpoint in that event's bucket (a
# rebuild ends at the last event of its types, so events of other types after it are no lag here).
UNAPPLIED = """
SELECT EXISTS (
    SELECT 1 FROM projections_checkpoint c JOIN eventstore_event e ON e.bucket = c.bucket
    AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)
    WHERE c.projection = %s AND e.event_type = ANY(%s)
)
"""


def _unapplied(subscribers: list[Subscriber]) -> list[str]:
    with connection.cursor() as cur:
        behind = []
        for subscriber in subscribers:
            ensure_checkpoints(subscriber)
            cur.execute(UNAPPLIED, [subscriber.name, subscriber.event_types])
            if cur.fetchone()[0]:
                behind.append(subscriber.name)
    return behind


def behind() -> list[str]:
    """The projections with events of their types they have not applied (all, after an import)."""
    return _unapplied(list(projection_registry.all()))


def processes_behind() -> list[str]:
    """Process managers with events of their types after their checkpoints (none after an import)."""
    return _unapplied(list(process_registry.all()))


ARCHIVE_BATCH = 100  # streams per archiving transaction, as archive_streams
ALREADY_ARCHIVED = "SELECT DISTINCT stream_id FROM eventstore_archived_event WHERE stream_id = ANY(%s)"


def archive_as_exported(stream_ids: Sequence[UUID], *, caught_up: bool) -> tuple[int, int]:
    """Archive again, as the owner, the streams an export says were archived, those every
    projection and process manager has passed (`archivable`); how many moved and how many wait
    (for `archive_streams`). Only these: a stream the source had tombstoned but not archived stays
    hot, as it was. `caught_up`: the projections have folded the log (rebuilt or at the head); a
    rebuild stops at the last event of its types, so a short catch-up first moves each bucket's
    checkpoints past the events after it. Otherwise nothing moves now: the workers fold the log
    first, then `archive_streams` archives."""
    with connection.cursor() as cur:  # archived by an earlier run of the same import
        cur.execute(ALREADY_ARCHIVED, [list(stream_ids)])
        done = {row[0] for row in cur.fetchall()}
    pending = [stream_id for stream_id in stream_ids if stream_id not in done]
    if not pending or not caught_up:
        return 0, len(pending)
    for bucket in range(BUCKETS):
        runner.catch_up(bucket)
    ready = set(archivable()[0])
    now = [stream_id for stream_id in pending if stream_id in ready]
    owner = EventStore(using=roles.migrating_alias())
    for i in range(0, len(now), ARCHIVE_BATCH):
        owner.archive(now[i : i + ARCHIVE_BATCH])
    return len(now), len(pending) - len(now)
