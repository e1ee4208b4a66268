"""Who holds the read horizon: the sessions whose open transactions keep subscribers waiting.

Subscribers read only below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction id
still in progress, so that no event can commit behind a reader's back. One long transaction with
a transaction id, in any database of the cluster (ids are cluster-wide), holds that horizon for
everyone: events committed after it started stay invisible until it ends. A session with only a
snapshot (`backend_xmin`, e.g. a long read) holds back vacuum, not this horizon, so it is not
named here. Short command transactions always hold the horizon for milliseconds: only sessions
older than `min_age_s` are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

XID_WRAP = 2**32
QUERY_CHARS = 500

HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8"

# Transaction ids in pg_stat_activity are 32-bit `xid`s; the horizon is an epoch-qualified xid8.
HOLDERS = """
SELECT pid, datname, application_name, usename, client_addr::text, state, xact_start,
       extract(epoch FROM clock_timestamp() - xact_start)::float8, left(query, %s), backend_xid::text,
       backend_xid = %s::xid
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
  AND xact_start < clock_timestamp() - make_interval(secs => %s)
ORDER BY age(backend_xid) DESC
"""

WAITING = "SELECT count(*) FROM eventstore_event WHERE tx_id >= %s::text::xid8"


@dataclass(frozen=True)
class Holder:
    """A session with a transaction id open for longer than the threshold."""

    pid: int
    database: str | None
    application_name: str
    user: str | None
    client_addr: str | None
    state: str | None
    xact_start: datetime
    age_s: float
    query: str
    xid: str
    holds_horizon: bool  # its transaction id is the horizon itself (the others are next in line)


@dataclass(frozen=True)
class Horizon:
    xmin: int  # the horizon: the oldest transaction id still in progress
    waiting: int  # events committed at or above it, which no subscriber can read yet
    holders: list[Holder]


def horizon(min_age_s: float = 1.0) -> Horizon:
    """The horizon now, how many committed events wait behind it, and the old sessions holding it."""
    with connection.cursor() as cur:
        cur.execute(HORIZON)
        xmin = cur.fetchone()[0]
        cur.execute(HOLDERS, [QUERY_CHARS, str(xmin % XID_WRAP), min_age_s])
        holders = [Holder(*row) for row in cur.fetchall()]
        waiting = 0
        if holders:
            cur.execute(WAITING, [xmin])
            waiting = cur.fetchone()[0]
    return Horizon(xmin=xmin, waiting=waiting, holders=holders)
