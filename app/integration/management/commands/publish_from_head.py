"""`manage.py publish_from_head`: the integration publisher's checkpoints at the log's head.

A new deployment's publisher starts at position zero, as every process manager does, and so
publishes the whole history once. Run this before its first start (or any time) to publish only
what is appended from now on; events already in the log are never published then.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from app.integration.publisher import IntegrationPublisher
from projections import status


class Command(BaseCommand):
    help = "Move the integration publisher to the head of the log: only events appended from now on are published."

    def handle(self, *args: Any, **options: Any) -> None:
        status.start_at_head([IntegrationPublisher.name])
        self.stdout.write(f"{IntegrationPublisher.name}: at the head of the log; publishes what comes next")
