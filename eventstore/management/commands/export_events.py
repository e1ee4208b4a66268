"""`manage.py export_events PATH`: the log as JSON lines (eventstore.backup), with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from psycopg import errors as pg_errors

from eventstore.backup import ExportSummary, Progress, export_log


class Command(BaseCommand):
    help = (
        "Write the event log up to its current head to PATH as JSON lines: every event as stored (personal "
        "data still sealed), then the subject keys still wrapped. Appends may go on meanwhile. '-' writes "
        "to standard output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument("--json", action="store_true", help="print a JSON summary instead of a sentence")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")

    def handle(self, *args: Any, path: str, json: bool, no_progress: bool, force: bool, **options: Any) -> None:
        bar = Progress("export", 0, enabled=not no_progress and sys.stderr.isatty())

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar(done)

        try:
            summary = self._export(path, force, progress)
        except pg_errors.UndefinedTable:
            raise CommandError("the database is not migrated: there is no log to export") from None
        bar.close(summary.events)
        say = self.stderr if path == "-" else self.stdout
        if json:
            say.write(orjson.dumps(summary.as_dict()).decode())
        else:
            say.write(
                f"exported {summary.events:,} events of {summary.streams:,} streams and {summary.subject_keys:,} "
                f"subject keys, {summary.bytes:,} bytes in {summary.seconds:.1f} s "
                f"({summary.events_per_s:,.0f} events/s)"
            )

    def _export(self, path: str, force: bool, progress: Callable[[int, int], None]) -> ExportSummary:
        if path == "-":
            return export_log(sys.stdout.buffer, progress=progress)
        target = Path(path)
        if target.exists() and not force:
            raise CommandError(f"{path} exists: choose another path, or --force to overwrite it")
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as out:
                summary = export_log(out, progress=progress)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CommandError(f"could not write {path}: {exc.strerror}") from None
        except BaseException:  # a failed or interrupted export leaves no file behind
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)  # only a complete export ever carries the name asked for
        return summary
