"""The Celery application: `celery -A app worker|beat`.

Workers and beat log through Django's LOGGING (app/core/logs.py), never Celery's own set-up: the
root logger is not hijacked, and each task's lines carry its id and name. Each worker process
(every prefork child) and beat turn tracing on when the `OTEL_*` variables ask for it
(app/core/telemetry.py).
"""

import os
from typing import Any

from celery import Celery, signals
from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from app.core import broker, logs, telemetry
from app.core.routine import quiet_routine_tasks, routine_tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

app = Celery("eventfold")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
broker.install()  # a worker survives its broker going away while it holds tasks (app/core/broker.py)


@setup_logging.connect
def use_django_logging(**kwargs: Any) -> None:
    """Celery sets up no logging of its own (and redirects no output) when this signal has a receiver."""
    from django.conf import settings

    logs.configure(settings.LOGGING)


@task_prerun.connect
def bind_task(**kwargs: Any) -> None:
    logs.task_started(**kwargs)


@task_postrun.connect
def unbind_task(**kwargs: Any) -> None:
    logs.task_ended(**kwargs)


@worker_process_init.connect
def trace_worker_process(**kwargs: Any) -> None:
    telemetry.configure("worker")


@worker_process_shutdown.connect
def flush_worker_spans(**kwargs: Any) -> None:
    telemetry.shutdown()


@beat_init.connect
def trace_beat(**kwargs: Any) -> None:
    telemetry.configure("beat")


@signals.worker_init.connect
@signals.beat_init.connect
def _quiet_routine_tasks(**_: object) -> None:
    """What beat sends every few seconds logs at DEBUG, not INFO (app/core/routine.py)."""
    quiet_routine_tasks(routine_tasks(app.conf.beat_schedule))
