"""`manage.py bench_recovery`: the speed of export_events and import_events on a big log
(docs/operations.md, "Measured speed").

Two scratch databases of the server, owned by the owner role and migrated: the source gets
`--events` ledger events made by the domain itself (P1's seed of docs/benchmarks.md: accounts
opened with deposits and withdrawals, completed transfers; every owner name sealed, a subject
key per account), in chunks of about 200,000. Then, each as its own `manage.py` process, as an
operator runs them: `export_events` of the source, `import_events` of that file into the empty
target (with its rebuild of every projection), and `export_events` of the target, whose events
must equal the source's. Each process's wall time and peak memory (RSS, sampled) are recorded,
with the file's and the tables' sizes. Needs a role that may create databases (`--admin-url`;
the embedded server's superuser by default); the databases are dropped at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import psutil
import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from app import embedded

ROOT = Path(__file__).resolve().parents[3]
CHUNK_ACCOUNTS, CHUNK_TRANSFERS = 20_000, 5_700  # about 200,000 events (P1's seed at scale 1)
SEED = "import sys\nfrom bench.rebuild_workload import _seed\nprint(_seed({accounts}, {transfers}, seed={seed}))\n"


def _url(database: str, user: str, password: str = "") -> str:
    s = settings.DATABASES["default"]
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{quote(str(s.get('HOST') or ''), safe='')}{port}/{database}"


class Command(BaseCommand):
    help = "Measure export_events and import_events on a log of --events events in scratch databases."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=1_000_000, help="about this many (in chunks of ~200,000)")
        parser.add_argument("--json", dest="path", help="where to write the JSON report")
        parser.add_argument("--admin-url", help="a role that may create databases (default: the embedded superuser)")
        parser.add_argument("--dir", default="artifacts/recovery", help="where the export files go")
        parser.add_argument("--keep", action="store_true", help="keep the scratch databases and files")

    def handle(self, *args: Any, events: int, path: str | None, admin_url: str | None, **options: Any) -> None:
        if "owner" not in settings.DATABASES:
            raise CommandError("needs two roles (DATABASE_OWNER_URL), as deployed")
        owner, app = settings.DATABASES["owner"], settings.DATABASES["default"]
        self.env = {
            "owner": (owner["USER"], owner.get("PASSWORD") or ""),
            "app": (app["USER"], app.get("PASSWORD") or ""),
        }
        admin = admin_url or embedded.database_url("postgres")
        folder = Path(options["dir"])
        folder.mkdir(parents=True, exist_ok=True)
        source, target = "eventfold_bench_dr_source", "eventfold_bench_dr_target"
        report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        with psycopg.connect(admin, autocommit=True) as conn:
            report["machine"]["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            try:
                for name in (source, target):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner["USER"]}"')
                    self._manage(name, "migrate", "--noinput")
                report.update(self._run(source, target, events, folder))
            finally:
                if not options["keep"]:
                    for name in (source, target):
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    for file in folder.glob("*.jsonl"):
                        file.unlink()
        text = json.dumps(report, indent=2)
        if path:
            Path(path).write_text(text + "\n")
        self.stdout.write(text)

    def _run(self, source: str, target: str, events: int, folder: Path) -> dict[str, Any]:
        began, made, seed = time.perf_counter(), 0, 0
        while made < events:
            out, _, _ = self._manage(
                source, "shell", "-c", SEED.format(accounts=CHUNK_ACCOUNTS, transfers=CHUNK_TRANSFERS, seed=seed)
            )
            made += int(out.split()[-1])
            seed += 1
            self.stdout.write(f"seeded {made:,} events ({time.perf_counter() - began:.0f} s)")
        exported, again = folder / "source.jsonl", folder / "target.jsonl"
        out, export_s, export_rss = self._manage(source, "export_events", str(exported), "--json", "--no-progress")
        export = orjson.loads(out.splitlines()[-1])
        self.stdout.write(f"export: {export['events']:,} events in {export_s:.1f} s")
        out, import_s, import_rss = self._manage(target, "import_events", str(exported), "--json", "--no-progress")
        imported = orjson.loads(out.splitlines()[-1])
        self.stdout.write(
            f"import: {imported['imported']:,} events in {imported['seconds']:.1f} s, {import_s:.1f} s with the rebuild"
        )
        _, again_s, _ = self._manage(target, "export_events", str(again), "--json", "--no-progress")
        same = _events_of(exported) == _events_of(again)
        return {
            "events": export["events"],
            "streams": export["streams"],
            "subject_keys": export["subject_keys"],
            "seed_s": round(time.perf_counter() - began - export_s - import_s - again_s, 1),
            "export": {
                "process_s": round(export_s, 1),
                "seconds": export["seconds"],
                "events_per_s": export["events_per_s"],
                "file_bytes": export["bytes"],
                "bytes_per_event": round(export["bytes"] / max(export["events"], 1)),
                "peak_rss_mb": export_rss,
            },
            "import": {
                "process_s": round(import_s, 1),
                "load_seconds": imported["seconds"],
                "load_events_per_s": imported["events_per_s"],
                "rebuild_seconds": round(import_s - imported["seconds"], 1),
                "rebuilt": imported["rebuilt"],
                "peak_rss_mb": import_rss,
            },
            "log_table_bytes": {name: self._table_bytes(name) for name in (source, target)},
            "restored_export_equal": same,
        }

    def _table_bytes(self, database: str) -> int:
        with psycopg.connect(_url(database, *self.env["owner"])) as conn:
            row = conn.execute("SELECT pg_total_relation_size('eventstore_event')").fetchone()
        return int(row[0]) if row else 0

    def _manage(self, database: str, *args: str) -> tuple[str, float, float]:
        """Run `manage.py ARGS` on a scratch database; its stdout, wall time and peak RSS in MB."""
        env = dict(
            os.environ,
            DATABASE_URL=_url(database, *self.env["app"]),
            DATABASE_OWNER_URL=_url(database, *self.env["owner"]),
            CELERY_BROKER_URL="memory://",
            EVENTFOLD_QUEUE_PREFIX="bench-recovery.",
        )
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        peak = [0]

        def sample() -> None:
            try:
                watched = psutil.Process(proc.pid)
                while proc.poll() is None:
                    peak[0] = max(peak[0], watched.memory_info().rss)
                    time.sleep(0.1)
            except psutil.NoSuchProcess:
                pass

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()
        elapsed = time.perf_counter() - began
        sampler.join()
        if proc.returncode:
            raise CommandError(f"manage.py {' '.join(args[:2])} failed: {err.decode()[-3000:]}")
        return out.decode(), elapsed, round(peak[0] / 2**20, 1)


def _events_of(path: Path) -> str:
    """A digest of the file's event lines, in order, without their transaction ids (the new
    cluster's own)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for line in f:
            obj = orjson.loads(line)
            if obj.get("kind") == "event":
                obj.pop("tx_id")
                digest.update(orjson.dumps(obj))
    return digest.hexdigest()
