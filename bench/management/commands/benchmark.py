import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bench import runner


class Command(BaseCommand):
    help = "Run the docs/benchmarks.md workloads against the configured database and write one JSON object."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", dest="path", help="where to write the JSON report")
        parser.add_argument("--workloads", default=",".join(runner.ALL), help="comma-separated ids, e.g. W1,W4")
        parser.add_argument("--scale", type=float, default=1.0, help="shrink every size, e.g. 0.1 for a quick look")
        parser.add_argument(
            "--big", action="store_true", help="probe an empty log and one of --events (bench/big_log.py)"
        )
        parser.add_argument("--events", type=int, default=10_000_000, help="the log's size for --big")

    def handle(self, *args, path: str | None, workloads: str, scale: float, big: bool, events: int, **options) -> None:
        if big:
            from bench import big_log

            if events < 1_000:
                raise CommandError("--events must be at least 1,000")
            self._write(big_log.run(events, lambda line: self.stdout.write(line)), path)
            return
        wanted = [w.strip().upper() for w in workloads.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in runner.ALL]
        if unknown:
            raise CommandError(f"unknown workloads {', '.join(unknown)}; known: {', '.join(runner.ALL)}")
        if not 0 < scale <= 10:
            raise CommandError("--scale must be in (0, 10]")
        self._write(runner.run(wanted, scale, lambda line: self.stdout.write(line)), path)

    def _write(self, report: dict, path: str | None) -> None:
        text = json.dumps(report, indent=2)
        if path:
            Path(path).write_text(text + "\n")
            self.stdout.write(f"wrote {path}")
        else:
            self.stdout.write(text)
