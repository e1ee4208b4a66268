"""`manage.py rebuild_projection NAME`: a blue/green rebuild run here, with a progress bar."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from projections import rebuild
from projections.base import projection_registry
from projections.models import Rebuild

BAR = 30


class Command(BaseCommand):
    help = (
        "Rebuild a projection's read model from position zero while the current one keeps serving, "
        "then swap it in. Joins a rebuild already running. --changed rebuilds every projection "
        "whose version in code differs from the one serving."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--changed", action="store_true", help="every projection whose version changed")
        parser.add_argument("--in-worker", action="store_true", help="queue it for the workers and return")
        parser.add_argument("--cancel", action="store_true", help="cancel the running rebuild instead")

    def handle(self, *args, names: list[str], changed: bool, in_worker: bool, cancel: bool, **options) -> None:
        names = list(names) + (rebuild.changed() if changed else [])
        known = ", ".join(p.name for p in projection_registry.all())
        if not names:
            if changed:
                self.stdout.write("every projection serves its current version")
                return
            raise CommandError(f"name a projection: {known}")
        for name in names:
            if name not in projection_registry:
                raise CommandError(f"unknown projection {name!r}: {known}")
        for name in names:
            if cancel:
                cancelled = rebuild.cancel(name)
                self.stdout.write(f"{name}: {'cancelled' if cancelled else 'no rebuild running'}")
                continue
            job = rebuild.start(name, reason="shell", run_in_worker=in_worker)
            if in_worker:
                self.stdout.write(f"{name}: rebuild {job.pk} queued on the rebuilds queue")
                continue
            self._run(name, job)

    def _run(self, name: str, job: Rebuild) -> None:
        began = time.monotonic()
        while True:
            outcome = rebuild.run_slice(job.pk, seconds=0.5)
            job.refresh_from_db()
            self._bar(name, job)
            if outcome in ("busy", "retry"):  # a worker holds this batch, or the database blinked
                time.sleep(0.5)
            elif outcome != "more":
                break
        sys.stdout.write("\n") if self.stdout.isatty() else None
        if job.state == Rebuild.State.DONE:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{name}: generation swapped in, {job.done:,} events in {time.monotonic() - began:.1f} s"
                )
            )
        else:
            raise CommandError(f"{name}: rebuild {job.state}\n{job.error}")

    def _bar(self, name: str, job: Rebuild) -> None:
        p = job.progress()
        total = max(p["total"], 1)
        filled = int(BAR * min(p["done"] / total, 1))
        eta = f"ETA {p['eta_s']:.0f} s" if p["eta_s"] is not None else ""
        line = (
            f"{name} [{'#' * filled}{'.' * (BAR - filled)}] {p['done']:,}/{p['total']:,} "
            f"{p['events_per_s']:,.0f} ev/s {eta}"
        )
        if self.stdout.isatty():
            self.stdout.write("\r" + line, ending="")
            self.stdout.flush()
        else:
            self.stdout.write(line)
