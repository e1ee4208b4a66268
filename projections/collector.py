"""What the database and Redis know, read at each scrape (`StateCollector`): where each projection
and process manager stands, rebuilds, backpressure and the workers' heartbeats.

State is read, not counted: a gauge set by the worker that last did something would be as stale
as that worker, and different in every process; the database holds the one true figure, and any
web process answering a scrape reads the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from projections import flags, status
from projections.metrics import heartbeats

log = logging.getLogger(__name__)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StateCollector(Collector):
    """Where each projection and process manager stands (the figures of GET /api/projections),
    rebuilds, backpressure and heartbeats. A part that cannot be read (the database or Redis down)
    is left out and `eventfold_state_up{part}` says 0: a scrape never fails for it."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = _gauge("eventfold_state_up", "Whether this scrape could read the part (database, redis)", ["part"])
        try:
            families = list(self._subscribers())
        except Exception:
            log.warning("metrics: could not read the projections' state", exc_info=True)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from families
        try:
            families = list(self._redis())
        except Exception:
            log.warning("metrics: could not read backpressure and heartbeats from Redis", exc_info=True)
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["redis"], 1)
            yield from families
        yield up

    def _subscribers(self) -> Iterator[GaugeMetricFamily]:
        labels = ["projection", "kind"]
        position = _gauge("eventfold_projection_position", "The lowest checkpoint position over its buckets", labels)
        lag = _gauge("eventfold_projection_lag_events", "Events in the log not applied yet", labels)
        lag_s = _gauge("eventfold_projection_lag_seconds", "Age of the oldest event not applied yet (0: none)", labels)
        parked = _gauge("eventfold_projection_parked_buckets", "Buckets parked on a failed event", labels)
        paused = _gauge("eventfold_projection_paused", "1 while paused by an operator", labels)
        head = _gauge("eventfold_log_head_position", "The position of the last committed event in read order")
        running = _gauge("eventfold_rebuild_running", "1 while a rebuild of the projection runs", ["projection"])
        done = _gauge("eventfold_rebuild_events_applied", "Events the latest rebuild has applied", ["projection"])
        ratio = _gauge("eventfold_rebuild_progress_ratio", "The latest rebuild's progress, 0 to 1", ["projection"])
        rate = _gauge("eventfold_rebuild_events_per_second", "The latest rebuild's speed", ["projection"])
        items = status.overview()
        if items:
            head.add_metric([], items[0]["head"])
        for item in items:
            key = [item["name"], item["kind"]]
            position.add_metric(key, item["position"])
            lag.add_metric(key, item["lag"])
            lag_s.add_metric(key, item["lag_seconds"])
            parked.add_metric(key, sum(1 for b in item["buckets"] if b["failed"]))
            paused.add_metric(key, 1 if item["status"] == "paused" else 0)
            if item["kind"] != "projection":
                continue
            running.add_metric([item["name"]], 1 if "rebuild" in item else 0)
            progress = item.get("rebuild") or item.get("last_rebuild")
            if progress is not None:
                done.add_metric([item["name"]], progress["done"])
                ratio.add_metric([item["name"]], progress["done"] / progress["total"] if progress["total"] else 1.0)
                rate.add_metric([item["name"]], progress["events_per_s"])
        yield from (position, lag, lag_s, parked, paused, head, running, done, ratio, rate)

    def _redis(self) -> Iterator[GaugeMetricFamily]:
        published = flags.published_max_lag()
        limit = settings.BACKPRESSURE_MAX_LAG
        active = _gauge("eventfold_backpressure_active", "1 while commands are refused for backpressure (503)")
        active.add_metric([], 1 if published > limit else 0)
        measured = _gauge("eventfold_backpressure_lag_events", "The largest projection lag as beat last published it")
        measured.add_metric([], published)
        threshold = _gauge("eventfold_backpressure_max_lag_events", "BACKPRESSURE_MAX_LAG: refuse commands above this")
        threshold.add_metric([], limit)
        beats = _gauge(
            "eventfold_worker_heartbeat_timestamp_seconds", "Unix time of each worker's last heartbeat", ["worker"]
        )
        for worker, at in sorted(heartbeats().items()):
            beats.add_metric([worker], at)
        yield from (active, measured, threshold, beats)
