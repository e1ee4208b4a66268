"""`manage.py import_events PATH`: load an export into an empty store, then process managers at the
head and projections rebuilt (eventstore.backup, projections.recovery)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from psycopg import errors as pg_errors

from eventstore import roles
from eventstore.backup import IMPORT_BATCH, BadExport, NotEmpty, Progress, import_log
from projections import recovery


class Command(BaseCommand):
    help = (
        "Load an export of export_events into an empty store (a new database, migrated) in log order, "
        "keeping event ids, versions and positions, then its tombstones; run again, it finishes a partial "
        "import or does nothing. Then process managers start at the head (they never act on imported events "
        "again), every projection rebuilds, and the streams the export had archived are archived again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument("--json", action="store_true", help="print a JSON summary instead of a sentence")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        parser.add_argument("--no-rebuild", action="store_true", help="leave the projections to catch up by themselves")
        parser.add_argument("--batch", type=int, default=IMPORT_BATCH, help="events per transaction")

    def handle(
        self, *args: Any, path: str, json: bool, no_progress: bool, no_rebuild: bool, batch: int, **options: Any
    ) -> None:
        source = Path(path)
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        if not source.is_file():
            raise CommandError(f"{path} is not a file")
        show = not no_progress and sys.stderr.isatty()
        bars: list[Progress] = []  # one per phase (checking, importing), the last one still open

        def progress(phase: str, done: int, total: int) -> None:
            if not bars or bars[-1].label != phase:
                if bars:
                    bars[-1].close(bars[-1].total)
                bars.append(Progress(phase, total, enabled=show))
            bars[-1].total = total or done
            bars[-1](done)

        try:
            with recovery.processes_held():
                summary = import_log(
                    source,
                    using=roles.migrating_alias(),
                    batch=batch,
                    on_batch=recovery.follow_import(recovery.prepare_processes()),
                    progress=progress,
                )
        except (BadExport, NotEmpty) as exc:
            raise CommandError(f"{path}: {exc}") from None
        except pg_errors.UndefinedTable:
            raise CommandError("the database is not migrated: run manage.py migrate first") from None
        except pg_errors.InsufficientPrivilege:
            raise CommandError(
                "the import writes the log as the role that owns it: set DATABASE_OWNER_URL "
                '(docs/deployment.md, "The database roles")'
            ) from None
        if bars:
            bars[-1].close(bars[-1].total)
        stuck = recovery.processes_behind()
        if stuck:  # cannot be, unless something else appended during the import
            raise CommandError(
                f"process managers behind the head after the import: {', '.join(stuck)}. Something else "
                "appended meanwhile: stop every other process before importing (docs/operations.md)"
            )
        rebuilt = [] if no_rebuild else recovery.behind()
        if rebuilt and not json:
            self.stdout.write(f"rebuilding {', '.join(rebuilt)}")
        if rebuilt:
            call_command("rebuild_projection", *rebuilt, stdout=self.stdout if not json else self.stderr)
        archived, waiting = recovery.archive_as_exported(summary.archived_streams, caught_up=not no_rebuild)
        if json:
            self.stdout.write(orjson.dumps({**summary.as_dict(), "rebuilt": rebuilt, "waiting": waiting}).decode())
            return
        done = "nothing left to import" if not summary.imported else f"imported {summary.imported:,} events"
        self.stdout.write(
            f"{done} ({summary.events:,} events of {summary.streams:,} streams and {summary.subject_keys:,} subject "
            f"keys in the file, {summary.already:,} already in the store) in {summary.seconds:.1f} s "
            f"({summary.events_per_s:,.0f} events/s); process managers start at the head; "
            + (f"rebuilt {', '.join(rebuilt)}" if rebuilt else "every projection at the head")
            + f"; {summary.tombstones:,} streams tombstoned, {archived:,} archived again"
            + (f"; {waiting:,} archived streams wait in the hot table: run archive_streams" if waiting else "")
        )
