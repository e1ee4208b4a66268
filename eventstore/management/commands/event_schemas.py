"""`manage.py event_schemas`: the event types' schema snapshots (eventstore/contracts.py).

Without options it lists each type's current version and whether its snapshot matches; with
`--write` it writes the current version's snapshot of every type whose file is missing or stale,
unless the contract check finds an incompatible change (a snapshot is never rewritten to hide one).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore import contracts
from eventstore.registry import registry


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # it reports the contract check itself
    help = "List the event types' schema snapshots, or (--write) write the current versions' snapshots."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--write", action="store_true", help="write missing or stale current-version snapshots")

    def handle(self, *args: Any, write: bool = False, **options: Any) -> None:
        directory = contracts.snapshot_dir()
        messages = contracts.check_contracts(registry, directory)
        errors = [m for m in messages if m.level >= checks.ERROR]
        if write:
            if errors:
                raise CommandError(
                    "not written: incompatible changes first need a version bump and an upcaster\n"
                    + "\n".join(f"{m.id}: {m.msg}\n  {m.hint}" for m in errors)
                )
            for path in contracts.write(registry, directory):
                self.stdout.write(f"wrote {path.relative_to(directory.parent.parent)}")
            self.stdout.write("snapshots up to date")
            return
        for entry in registry.types():
            self.stdout.write(f"{entry.name} v{entry.version}")
        for m in messages:
            self.stdout.write(f"{m.id}: {m.msg}")
        if not messages:
            self.stdout.write("every type matches its snapshot")
