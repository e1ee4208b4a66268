"""`manage.py archive_streams`: move tombstoned streams' events out of the hot table, as the owner."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore import roles
from eventstore.store import EventStore
from projections.archiving import archivable

BATCH = 100  # streams per transaction


class Command(BaseCommand):
    help = (
        "Move the events of tombstoned streams that every projection and process manager has passed "
        "from the events table to the archive (as the owner role). They stay readable by stream, and "
        "projections, rebuilds, verification and exports read them; process managers and the timeline "
        "no longer walk them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=BATCH, help=f"streams per transaction (default {BATCH})")

    def handle(self, *args: Any, batch: int, **options: Any) -> None:
        if not 0 < batch <= 10_000:
            raise CommandError("--batch must be from 1 to 10000")
        ready, waiting = archivable()
        owner = EventStore(using=roles.migrating_alias())
        events = 0
        for i in range(0, len(ready), batch):
            events += owner.archive(ready[i : i + batch])
        line = f"archived {len(ready)} streams ({events} events)"
        if waiting:
            line += f"; {waiting} tombstoned streams wait for the projections to pass them"
        self.stdout.write(line)
