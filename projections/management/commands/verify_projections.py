"""`manage.py verify_projections [NAME ...]`: replay into scratch tables and diff with the live
read models; exits non-zero on any difference."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from projections.base import projection_registry
from projections.verify import verify


class Command(BaseCommand):
    help = (
        "Replay every projection (or those named) into scratch tables and compare them with the live "
        "read models at the same checkpoints. Prints the differing rows; exits 1 if there are any."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")

    def handle(self, *args, names: list[str], **options) -> None:
        known = [p.name for p in projection_registry.all()]
        for name in names:
            if name not in known:
                raise CommandError(f"unknown projection {name!r}: {', '.join(known)}")
        dirty = []
        for name in names or known:
            report = verify(name)
            if report.clean:
                rows = ", ".join(f"{t.table} {t.rows:,} rows" for t in report.tables)
                self.stdout.write(self.style.SUCCESS(f"{name}: ok ({report.events:,} events replayed; {rows})"))
                continue
            dirty.append(name)
            self.stdout.write(self.style.ERROR(f"{name}: DIFFERENT ({report.events:,} events replayed)"))
            for t in report.tables:
                if t.clean:
                    continue
                self.stdout.write(
                    f"  {t.table}: {t.count_only_live} row(s) only in the live table, "
                    f"{t.count_only_replay} only in the replay"
                )
                for row in t.only_live:
                    self.stdout.write(f"    - live:   {row}")
                for row in t.only_replay:
                    self.stdout.write(f"    + replay: {row}")
        if dirty:
            raise CommandError(f"read models differ from a replay: {', '.join(dirty)}")
