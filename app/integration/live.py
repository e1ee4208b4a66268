"""The head of the log, watched once per process for every live reader (the server-sent events of
`GET /api/events/live`, long-polling fetches of subscriptions).

Readers that have caught up wait here for the head to move, instead of each polling the database:
one task per event loop (one per web process) reads the head below the horizon every `POLL_S`
while anyone waits, one index probe of the read order, whatever the number of readers; it stops
when nobody has waited for a while. Why a poll and not a Redis publish from the append's on-commit
hook: the append stays as it is (no extra round trip per event, docs/design.md "The append"), an
event committed above the horizon would need a poll anyway to be noticed once the horizon passes
it, and a Redis that is away delays nobody. The price is up to `POLL_S` of latency.
"""

from __future__ import annotations

import asyncio
import logging
import time

from psycopg import sql

from app.core.threads import in_thread
from eventstore.libpq import INT_LOADER, XID8_OID
from eventstore.records import START, Checkpoint
from eventstore.statements import HORIZON, TABLE
from eventstore.store import EventStore

log = logging.getLogger(__name__)
POLL_S = 0.2
IDLE_STOP_S = 5.0  # the watcher ends this long after its last waiter left
ERROR_BACKOFF_S = 1.0

HEAD = sql.SQL(
    "SELECT tx_id, global_position FROM {table} WHERE {horizon} ORDER BY tx_id DESC, global_position DESC LIMIT 1"
).format(table=TABLE, horizon=HORIZON)


def read_head() -> Checkpoint:
    """The last event below the horizon, in read order: it only moves when new events can be read."""
    store = EventStore()
    with store.cursor() as cur:
        cur.adapters.register_loader(XID8_OID, INT_LOADER)
        row = cur.execute(HEAD).fetchone()
    return Checkpoint(*row) if row else START


class HeadWatcher:
    """One per event loop: `generation` counts the moves of the head it has seen."""

    def __init__(self) -> None:
        self.generation = 0
        self.head: Checkpoint | None = None
        self.waiters = 0
        self.last_waiter = time.monotonic()
        self.moved = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def wait(self, generation: int, timeout: float) -> bool:
        """Wait until the head moves past `generation` (taken before the caller's last read);
        False if `timeout` seconds passed first."""
        if self.generation != generation:
            return True
        self.waiters += 1
        self._ensure_running()
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                while self.generation == generation:
                    await self.moved.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiters -= 1
            self.last_waiter = time.monotonic()

    def _ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        failing = False
        while self.waiters or time.monotonic() - self.last_waiter < IDLE_STOP_S:
            try:
                head = await in_thread(read_head)()
            except Exception:
                if not failing:
                    log.warning("could not read the head of the log; live readers wait", exc_info=True)
                failing = True
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            failing = False
            if head != self.head:
                self.head = head
                self.generation += 1
                moved, self.moved = self.moved, asyncio.Event()
                moved.set()
            await asyncio.sleep(POLL_S)
        self.head = None  # a later start reads it afresh (and wakes everyone once: harmless)


_watchers: dict[asyncio.AbstractEventLoop, HeadWatcher] = {}


def watcher() -> HeadWatcher:
    """This event loop's watcher."""
    loop = asyncio.get_running_loop()
    found = _watchers.get(loop)
    if found is None:
        for old in [lp for lp in _watchers if lp.is_closed()]:
            del _watchers[old]
        found = _watchers[loop] = HeadWatcher()
    return found
