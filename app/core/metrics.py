"""Prometheus metrics: what the processes count, and the one scrape that adds them up.

prometheus_client's multiprocess mode: every web and worker process of a machine (uvicorn's
workers, Celery's pool processes) writes its counters and histograms to files of its own in one
directory (settings.METRICS_DIR, from PROMETHEUS_MULTIPROC_DIR), and `GET /metrics`, whichever web
process answers it, sums the files. So one scrape target per machine is right however many
processes serve it, and a pool process that a worker replaces keeps what it counted (its files
stay: counters never go back). What the database or Redis already knows (projection positions,
lag, parked buckets, rebuilds, backpressure, worker heartbeats) is not counted in any process but
read at scrape time (projections.collector.StateCollector), so it is right from any process and
any machine.

Names follow Prometheus' conventions: the `eventfold_` prefix, base units, counters in
`_total`, labels with few values (a command's or event type's name, an outcome, never an id or a
user). Every family is listed in docs/operations/metrics.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
from pathlib import Path
from typing import Any

from celery.signals import worker_process_shutdown
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

from projections import metrics as _projection_metrics  # noqa: F401  (first: it makes sure of the multiprocess mode)
from projections.collector import StateCollector

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

COMMANDS = Counter(
    "eventfold_commands_total",
    "Commands sent by the API and the console, by command and outcome (ok, the refusal's error code, or error)",
    ["command", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "eventfold_command_duration_seconds",
    "Time from a command's arrival at the dispatch to its answer, refusals included",
    ["command"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_APPENDED = Counter("eventfold_events_appended_total", "Events appended to the log, by event type", ["type"])
APPEND_SECONDS = Histogram(
    "eventfold_append_duration_seconds",
    "Time an append took (one statement, any number of events), by stream category",
    ["category"],
    buckets=LATENCY_BUCKETS,
)
LOGIN_FAILURES = Counter(
    "eventfold_login_failures_total",
    "Failed logins: wrong credentials, or tried while locked out",
    ["reason"],
)
for _reason in ("credentials", "locked_out"):
    LOGIN_FAILURES.labels(_reason)  # at zero from the start: a rate of nothing is 0, not absent
LOGIN_LOCKOUTS = Counter("eventfold_login_lockouts_total", "Login locks begun (per username and address, or address)")
HTTP_SECONDS = Histogram(
    "eventfold_http_request_duration_seconds",
    "HTTP requests, from arrival to the end of the answer, by part (api, console, static, probe) and status",
    ["part", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# More state read at scrape time, from layers above this one (app.integration's dead letters):
# they add their collector here when their app is ready.
STATE_COLLECTORS: list[Any] = []


def appended(category: str, types: list[str], seconds: float) -> None:
    """eventstore.hooks.measured: one observation per append, one count per event."""
    APPEND_SECONDS.labels(category).observe(seconds)
    for name in types:
        EVENTS_APPENDED.labels(name).inc()


def http_request(part: str, method: str, status: int | None, seconds: float) -> None:
    HTTP_SECONDS.labels(part, method if method in METHODS else "other", str(status or "none")).observe(seconds)


# -- the directory and the scrape -------------------------------------------------------------------
_DB_FILE = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        pass
    return True


def prepare() -> None:
    """At each process's start: forget the live gauges of processes that died without saying so
    (killed), and say so on our own way out. Counters and histograms of dead processes stay."""
    path = Path(settings.METRICS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    seen = {int(m.group(1)) for f in path.glob("*.db") if (m := _DB_FILE.search(f.name))} - {os.getpid()}
    for pid in seen:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(path))
    me = os.getpid()
    atexit.register(lambda: os.getpid() == me and multiprocess.mark_process_dead(me, str(path)))


@worker_process_shutdown.connect
def _pool_process_exits(**kwargs: object) -> None:
    """Celery's pool processes leave through os._exit, past atexit."""
    multiprocess.mark_process_dead(os.getpid(), settings.METRICS_DIR)


def exposition() -> tuple[bytes, str]:
    """Every process's counters on this machine, summed, and the state read from the database now."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=settings.METRICS_DIR)
    registry.register(StateCollector())
    for collector in STATE_COLLECTORS:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
