"""`manage.py benchmark --workloads P4`, `--workloads P5` and `--big` end to end at tiny sizes, as a
user runs them: P4 loads its account from a snapshot at its last event and from a twin that has
none; P5 catches a backlog up with a real worker and rebuilds the same log as its reference;
`--big` grows the log by the events asked for, probes it before and after, rebuilds it, and
drops its scratch schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

from tests.conftest import worker_database_url

ROOT = Path(__file__).resolve().parents[3]


def _benchmark(*args: str, out: Path) -> dict:
    env = dict(os.environ, DATABASE_URL=worker_database_url())
    env.pop("TEST_DATABASE_NAME", None)
    run = subprocess.run(
        [sys.executable, "manage.py", "benchmark", *args, "--json", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(out.read_text())


def _no_scratch_schema_left() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eventfold_bench%%'")
        return cur.fetchone()[0] == 0


def test_p4_loads_from_a_snapshot_and_folds_the_twin_without_one(transactional_db, tmp_path):
    p4 = _benchmark("--workloads", "P4", "--scale", "0.1", out=tmp_path / "p4.json")["P4"]

    assert p4["events"] == 1_000 and p4["snapshot_every"] == 100
    assert p4["snapshot_at"] == 1_000 and p4["events_after_snapshot"] == 0
    assert len(p4["snapshot_runs"]) == len(p4["full_runs"]) == 20
    assert p4["snapshot_ms"] > 0 and p4["full_ms"] > 0
    assert p4["ratio"] == round(p4["snapshot_ms"] / p4["full_ms"], 4)
    assert _no_scratch_schema_left()


def test_big_grows_the_log_probes_it_at_both_sizes_and_reports_the_disk(transactional_db, tmp_path):
    report = _benchmark("--big", "--events", "2000", out=tmp_path / "big.json")

    assert report["events_grown"] == 2_000
    empty, full = report["empty"], report["full"]
    assert empty["log_events"] == 0
    # the probe at 0 leaves its own events (W1, W4, two P4 accounts) in the log, then 2,000 ledger events
    assert full["log_events"] == report["disk"]["events"] == 4 * 1_000 + 4 * 20_000 + 2 * 10_000 + 2_000
    for probe in (empty, full):
        assert len(probe["w1_runs"]) == len(probe["w4_runs"]) == 3
        assert all(probe[k] > 0 for k in ("w1_eps", "w1_p99_ms", "w4_eps", "snapshot_ms", "full_ms", "stream_ms"))
    assert set(report["ratio_full_over_empty"]) >= {"w1_eps", "w4_eps", "timeline_ms", "catalog_ms"}
    indexes = report["disk"]["index_bytes_per_event"]
    assert "eventstore_event_pkey" in indexes and all(v >= 0 for v in indexes.values())
    assert report["disk"]["bytes_per_event"] > report["disk"]["table_bytes_per_event"] > 0
    rebuilt = report["rebuild"]
    assert rebuilt["events"] == full["log_events"]
    assert set(rebuilt["eps"]) == {"account_entries", "account_summary", "daily_totals", "transfers"}
    # every projection rebuilt one after another: the whole takes longer than any one of them
    assert all(eps > rebuilt["all_eps"] > 0 for eps in rebuilt["eps"].values())
    assert abs(rebuilt["all_eps"] - rebuilt["events"] / rebuilt["all_seconds"]) <= 0.01 * rebuilt["all_eps"]
    assert _no_scratch_schema_left()


def test_p5_catches_a_backlog_up_with_a_worker_and_rebuilds_it_as_the_reference(transactional_db, tmp_path):
    p5 = _benchmark("--workloads", "P5", "--scale", "0.01", out=tmp_path / "p5.json")["P5"]

    assert p5["events"] == 100 * 100  # 100 accounts (the least) of 100 events
    assert len(p5["runs"]) == len(p5["reference_runs"]) == len(p5["run_ratios"]) == 3
    assert p5["ratio"] in p5["run_ratios"] and p5["eps"] in p5["runs"]
    assert p5["eps"] > 0 and p5["reference_eps"] > 0
    # the projections reach lag 0 no later than everything does (the last poll may see both at once)
    assert p5["projections_eps"] >= 0.99 * p5["eps"]
    # every projection and process manager, the integration publisher among them, reached lag 0
    assert set(p5["finished_s"]) >= {
        "account_entries",
        "account_summary",
        "daily_totals",
        "transfers",
        "transfer_process",
        "integration_publisher",
    }
    assert p5["status_samples"] > 0 and p5["status_errors"] == 0
    assert set(p5["serial_eps"]) >= {"projections_folded", "integration_publisher"}
    assert _no_scratch_schema_left()
