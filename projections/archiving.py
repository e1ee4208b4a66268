"""Which tombstoned streams may leave the hot table: those every subscriber has passed.

Process managers read the events table alone (`EventStore.read_all` without `include_archived`;
projections read the archive too), so a stream is archived only once every projection and process
manager has applied (or handled) its last event in its bucket.
"""

from __future__ import annotations

from uuid import UUID

from django.db import connection

from eventstore.records import Checkpoint
from projections.base import projection_registry
from projections.models import BucketCheckpoint
from projections.processes import process_registry

# Each tombstoned stream still in the events table: its bucket and its last event's place.
CANDIDATES = """
SELECT DISTINCT ON (e.stream_id) e.stream_id, e.bucket, e.tx_id::text::int8, e.global_position
FROM eventstore_tombstone t JOIN eventstore_event e ON e.stream_id = t.stream_id
ORDER BY e.stream_id, e.version DESC
"""


def archivable() -> tuple[list[UUID], int]:
    """The tombstoned streams every subscriber has passed, and how many others still wait."""
    names = [p.name for p in projection_registry.all()] + [p.name for p in process_registry.all()]
    at: dict[tuple[str, int], Checkpoint] = {
        (c.projection, c.bucket): Checkpoint(c.tx_id, c.position)
        for c in BucketCheckpoint.objects.filter(projection__in=names)
    }
    with connection.cursor() as cur:
        cur.execute(CANDIDATES)
        rows = cur.fetchall()
    ready, waiting = [], 0
    for stream_id, bucket, tx_id, position in rows:
        last = Checkpoint(tx_id, position)
        if all((name, bucket) in at and at[name, bucket] >= last for name in names):
            ready.append(stream_id)
        else:
            waiting += 1
    return ready, waiting
