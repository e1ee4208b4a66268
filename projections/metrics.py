"""The projection engine's metrics: catch-up batch durations, counted in the worker processes,
and the workers' heartbeats, in Redis (one hash, a field per worker, written by a thread of each
worker's main process, so workers on any machine show). What the database knows is read at
scrape time instead (projections.collector).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import prometheus_client.values
from django.conf import settings
from prometheus_client import Counter, Histogram

from projections import flags

log = logging.getLogger(__name__)

# The mode is chosen when prometheus_client is first imported; settings set the directory before
# that, but a library imported earlier must not leave this process's counts out of the files.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and prometheus_client.values.ValueClass is (
    prometheus_client.values.MutexValue
):
    prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()

BATCH_SECONDS = Histogram(
    "eventfold_catchup_batch_duration_seconds",
    "One catch-up batch of a bucket: read, apply, checkpoint (by kind: projection or process manager)",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
for _kind in ("projection", "process"):
    BATCH_SECONDS.labels(_kind)  # at zero from the start

FOLDED = Counter(
    "eventfold_catchup_folded_events_total",
    "Events a catch-up folded in memory (a bucket far behind), not applied one at a time",
    ["projection"],
)

HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_FORGET_S = 3600.0  # a worker gone this long is dropped from the hash (and the scrape)


# -- worker heartbeats -------------------------------------------------------------------------------
def heartbeats_key() -> str:
    return f"eventfold:{settings.QUEUE_PREFIX}heartbeats"


def beat(worker: str) -> None:
    flags.client().hset(heartbeats_key(), worker, f"{time.time():.3f}")


def start_heartbeat(worker: str) -> threading.Thread:
    """A daemon thread of the worker's main process: its heartbeat every HEARTBEAT_EVERY_S."""

    def loop() -> None:
        while True:
            try:
                beat(worker)
            except Exception:
                log.warning("could not record the heartbeat of %s", worker, exc_info=True)
            time.sleep(HEARTBEAT_EVERY_S)

    thread = threading.Thread(target=loop, name="eventfold-heartbeat", daemon=True)
    thread.start()
    return thread


def heartbeats() -> dict[str, float]:
    """The last heartbeat of each worker seen within HEARTBEAT_FORGET_S (older ones are dropped)."""
    client = flags.client()
    seen = {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in client.hgetall(heartbeats_key()).items()}
    gone = [name for name, at in seen.items() if time.time() - at > HEARTBEAT_FORGET_S]
    if gone:
        client.hdel(heartbeats_key(), *gone)
    return {name: at for name, at in seen.items() if name not in gone}
