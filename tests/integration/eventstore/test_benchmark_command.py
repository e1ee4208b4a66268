"""`manage.py benchmark` end to end at a tiny scale, as a user runs it: every event-store workload
runs for both systems (writer and reader processes included) and reports its figure beside the
raw reference measured in the same run; W5's subscriber must miss nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import worker_database_url

ROOT = Path(__file__).resolve().parents[3]


def test_the_benchmark_reports_every_store_workload_beside_its_same_run_reference(transactional_db, tmp_path):
    out = tmp_path / "benchmark.json"
    env = dict(os.environ, DATABASE_URL=worker_database_url())
    env.pop("TEST_DATABASE_NAME", None)
    command = ["manage.py", "benchmark", "--workloads", "W1,W2,W3,W4,W5", "--scale", "0.01", "--json", str(out)]
    run = subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())

    assert report["machine"]["cores"] >= 1 and report["scale"] == 0.01
    for wid in ("W1", "W2", "W3", "W4"):
        figure = report[wid]
        assert len(figure["runs"]) == len(figure["reference_runs"]) == len(figure["run_ratios"]) == 3
        assert min(figure["runs"]) > 0 and min(figure["reference_runs"]) > 0
        # the figure is the run with the median same-run ratio, with that run's own reference
        assert figure["ratio"] == sorted(figure["run_ratios"])[1]
        assert figure["eps"] in figure["runs"] and figure["reference_eps"] in figure["reference_runs"]
        assert figure["ratio"] == pytest.approx(figure["eps"] / figure["reference_eps"], abs=1e-3)
    assert report["W5"]["missed"] == 0
    assert report["W5"]["events"] == report["W5"]["reference_events"] == 3 * 4 * 50

    with connection.cursor() as cur:  # the scratch schema is gone
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'eventfold_bench%%'")
        assert cur.fetchone()[0] == 0
