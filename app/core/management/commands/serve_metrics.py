"""`python manage.py serve_metrics --port 9808`: this machine's counts (every process writing to its
PROMETHEUS_MULTIPROC_DIR) on a port of their own, for machines that run Celery workers but no web
server. No token and no state from the database (the web servers' /metrics has that): bind it to a
private address. Runs until stopped."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from prometheus_client import CollectorRegistry, multiprocess, start_http_server


class Command(BaseCommand):
    help = "Serve this machine's multiprocess metrics (no token, no database state) on --port, for worker machines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=9808)
        parser.add_argument("--addr", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")

    def handle(self, *args: Any, port: int, addr: str, **options: Any) -> None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=settings.METRICS_DIR)
        start_http_server(port, addr=addr, registry=registry)
        self.stdout.write(f"metrics of {settings.METRICS_DIR} on http://{addr}:{port}/metrics")
        threading.Event().wait()
