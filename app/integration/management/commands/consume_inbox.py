"""`python manage.py consume_inbox`: handle inbound messages from the integration broker until
stopped (SIGTERM or SIGINT), exactly once in effect; see app/integration/consumer.py and
docs/integration.md. `make run` starts one; production runs one or more beside the workers."""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from app.integration import transport
from app.integration.consumer import InboxConsumer, OneLine


class Command(BaseCommand):
    help = "Consume inbound integration messages (the inbox) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queue", help="the queue to consume (default: EVENTFOLD_INBOX_QUEUE)")

    def handle(self, *args: Any, queue: str | None = None, **options: Any) -> None:
        logging.getLogger("kombu.mixins").addFilter(OneLine())
        with transport.connection() as conn:
            consumer = InboxConsumer(conn, queue)
            signal.signal(signal.SIGTERM, consumer.request_stop)
            signal.signal(signal.SIGINT, consumer.request_stop)
            consumer.run()
