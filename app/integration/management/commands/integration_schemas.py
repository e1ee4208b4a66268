"""`manage.py integration_schemas`: the integration events' schema snapshots (app/integration/contracts.py).

Without options it lists each integration event with its routing key and what the check says;
with `--write` it writes missing or stale snapshots, unless the check finds a change consumers
cannot follow (a snapshot is never rewritten to hide one).
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser

from app.integration import contracts
from app.integration.events import registry


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # it reports the contract check itself
    help = "List the integration events' schema snapshots, or (--write) write missing or stale ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--write", action="store_true", help="write missing or stale snapshots")

    def handle(self, *args: Any, write: bool = False, **options: Any) -> None:
        directory = contracts.snapshot_dir()
        messages = contracts.check_contracts(registry, directory)
        errors = [m for m in messages if m.level >= checks.ERROR]
        if write:
            if errors:
                raise CommandError(
                    "not written: a change consumers cannot follow needs a new version\n"
                    + "\n".join(f"{m.id}: {m.msg}\n  {m.hint}" for m in errors)
                )
            for path in contracts.write(registry, directory):
                self.stdout.write(f"wrote {path.relative_to(directory.parent.parent)}")
            self.stdout.write("snapshots up to date")
            return
        for entry in registry.events():
            self.stdout.write(f"{entry.name} v{entry.version} (routing key {entry.routing_key})")
        for m in messages:
            self.stdout.write(f"{m.id}: {m.msg}")
        if not messages:
            self.stdout.write("every integration event matches its snapshot")
