"""Commands per 10-second slot, for the console's dashboard: how many were answered ok, refused
(a 4xx: a business rule, a conflict, bad input) or failed (a 5xx: backpressure, the database
unreachable, a bug). One Redis hash per slot, kept for the dashboard's ten minutes, so every web
and worker process on every machine adds to the same figures (Prometheus has the same counts,
by command, in eventfold_commands_total; the dashboard must not depend on a Prometheus server).

Each process adds up in memory and flushes to Redis FLUSH_AFTER_S after the first count of a
batch (one pipelined round trip, a timer thread): a round trip per command would cost a deposit
about a tenth of its time. Redis down: not counted, never refused.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Literal

from django.conf import settings

from projections import flags

log = logging.getLogger(__name__)

SLOT_S = 10
KEEP_S = 11 * 60  # the dashboard's ten minutes and the slot being filled
# The dashboard fetches 300 ms after the last live hint (templates: console/dashboard.html), and
# a command's hint leaves at its commit or later: a flush 100 ms after the count leaves 200 ms to
# spare for a busy process's timer thread (at 250 ms, 50 ms did not always do).
FLUSH_AFTER_S = 0.1
Kind = Literal["ok", "refused", "error"]
KINDS: tuple[Kind, ...] = ("ok", "refused", "error")

_pending: dict[tuple[int, Kind], int] = {}
_lock = threading.Lock()
_timer: threading.Timer | None = None


def slot_of(at: float) -> int:
    return int(at // SLOT_S) * SLOT_S


def key(slot: int) -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}commands:{slot}"


def count(kind: Kind) -> None:
    """Count one command now; it reaches Redis with the next flush, at most FLUSH_AFTER_S later."""
    global _timer
    slot = slot_of(time.time())
    with _lock:
        _pending[(slot, kind)] = _pending.get((slot, kind), 0) + 1
        if _timer is None:
            _timer = threading.Timer(FLUSH_AFTER_S, flush)
            _timer.daemon = True
            _timer.start()


def flush() -> None:
    """Add what this process counted since the last flush to Redis: one pipelined round trip."""
    global _timer, _pending
    with _lock:
        pending, _pending, _timer = _pending, {}, None
    if not pending:
        return
    try:
        pipe = flags.client().pipeline(transaction=False)
        for (slot, kind), n in pending.items():
            pipe.hincrby(key(slot), kind, n)
        for slot in {slot for slot, _ in pending}:
            pipe.expire(key(slot), KEEP_S)
        pipe.execute()
    except Exception:
        log.debug("could not count commands for the dashboard", exc_info=True)


atexit.register(flush)


def slots(first: int, last: int) -> dict[int, dict[Kind, int]]:
    """{slot start (unix seconds): {kind: commands}} for the slots from `first` to `last`."""
    starts = list(range(slot_of(first), slot_of(last) + 1, SLOT_S))
    pipe = flags.client().pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(key(start))
    found: dict[int, dict[Kind, int]] = {}
    for start, row in zip(starts, pipe.execute(), strict=True):
        if row:
            found[start] = {kind: int(row.get(kind.encode(), 0)) for kind in KINDS}
    return found
