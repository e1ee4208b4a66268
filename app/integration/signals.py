"""The exchange is declared as a worker starts (once, in its main process, before the pool forks)."""

from __future__ import annotations

from celery.signals import worker_init

from app.integration import transport


@worker_init.connect
def declare_exchange(**kwargs: object) -> None:
    transport.declare_at_start()
