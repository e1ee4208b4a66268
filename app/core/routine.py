"""Routine task traffic out of the INFO log: the tasks beat sends every few seconds (the
projections' safety-net tick, the transfers' expiry sweep, the idempotency sweep) and the catch-up
task every append wakes would otherwise log "Task ... received", "Task ... succeeded" and beat's
"Scheduler: Sending due task" lines around the clock, thousands of them after the demo data.
Those lines are logged at DEBUG instead (`LOG_LEVEL=DEBUG` shows them); every other task (a
rebuild's slices, say) still logs at INFO, and a routine task that fails still logs its error.

The filter sits on the three Celery loggers that write those lines (`quiet_routine_tasks`, called
where the Celery app is made), so it holds whatever handlers the logging set-up installs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

EVENT_DRIVEN = ("projections.catch_up_bucket", "projections.catch_up_pending")  # routine too: one per append, or more
# Celery's loggers of task traffic: a worker's "received", its "succeeded", beat's "Sending due task".
TRAFFIC_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "celery.beat")


class RoutineTasks(logging.Filter):
    """Demotes INFO lines that name one of `tasks` to DEBUG, and drops them unless DEBUG is on."""

    def __init__(self, tasks: Iterable[str]) -> None:
        super().__init__()
        self.tasks = tuple(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self.tasks:
            return True
        message = record.getMessage()
        if not any(task in message for task in self.tasks):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def routine_tasks(schedule: dict[str, dict[str, object]]) -> list[str]:
    """The task names in a beat schedule (what runs on a timer is routine) and the catch-up task."""
    return sorted({str(entry["task"]) for entry in schedule.values()} | set(EVENT_DRIVEN))


def quiet_routine_tasks(tasks: Iterable[str]) -> None:
    quiet = RoutineTasks(tasks)
    for name in TRAFFIC_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RoutineTasks)]:
            logger.removeFilter(old)
        logger.addFilter(quiet)
