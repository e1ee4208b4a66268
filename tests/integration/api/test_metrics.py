"""GET /metrics (docs/operations/metrics.md): who may read it, that it is Prometheus' text format,
and that commands by outcome, appends, logins and the projections' state show in it. The counters
live in this test run's own multiprocess directory and only grow: each test compares before and after.
(tests/e2e/test_metrics.py scrapes a live server while a real worker applies the events.)"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from app.core import metrics
from app.ledger import commands, handlers
from app.ledger.commands import Sender
from app.ledger.domain.errors import InsufficientFunds
from projections import runner
from tests.integration.api.conftest import Api, make_user, open_account
from tests.support import metric_samples, metric_value

ROOT = Path(__file__).resolve().parents[3]


def scrape(token: str | None = None) -> dict:
    response = Api(token).get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return metric_samples(response.content.decode())


@pytest.mark.parametrize(("role", "status"), [("viewer", 200), ("operator", 200), ("admin", 200)])
def test_a_token_of_the_viewer_role_or_above_reads_the_metrics(transactional_db, role, status):
    response = Api(make_user(f"scraper-{role}", role)).get("/metrics")
    assert response.status_code == status
    assert b"# TYPE eventfold_login_failures_total counter" in response.content


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_without_a_valid_token_401_in_the_contract_s_body(transactional_db, token):
    response = Api(token).get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"eventfold_" not in response.content


def test_a_revoked_token_or_an_inactive_user_is_401(transactional_db):
    from app.core.models import ApiToken

    revoked = make_user("scraper-revoked", "admin")
    ApiToken.objects.filter(user__username="scraper-revoked").update(revoked_at=timezone.now())
    inactive = make_user("scraper-inactive", "admin")
    get_user_model().objects.filter(username="scraper-inactive").update(is_active=False)
    for token in (revoked, inactive):
        response = Api(token).get("/metrics")
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


def test_the_operator_may_open_it_to_anyone(transactional_db, settings):
    settings.METRICS_ALLOW_ANONYMOUS = True
    response = Api(None).get("/metrics")
    assert response.status_code == 200
    assert b"eventfold_projection_lag_events" in response.content


def test_only_get_reads_it(transactional_db):
    response = Api(make_user("scraper-post", "admin")).post("/metrics", {})
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


def test_commands_count_by_name_and_outcome_with_their_latency(transactional_db):
    token = make_user("scraper-commands", "viewer")
    before = scrape(token)
    sender = Sender(actor="metrics-test")
    account = commands.send(handlers.account_open, sender, owner="Mia Metric", currency="EUR").stream_id
    commands.send(handlers.account_deposit, sender, account_id=account, amount=100)
    with pytest.raises(InsufficientFunds):
        commands.send(handlers.account_withdraw, sender, account_id=account, amount=1_000)
    with pytest.raises(commands.NotFound):
        commands.send(handlers.account_deposit, sender, account_id=uuid4(), amount=1)
    after = scrape(token)

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved("eventfold_commands_total", command="account_open", outcome="ok") == 1
    assert moved("eventfold_commands_total", command="account_deposit", outcome="ok") == 1
    assert moved("eventfold_commands_total", command="account_withdraw", outcome="insufficient_funds") == 1
    assert moved("eventfold_commands_total", command="account_deposit", outcome="not_found") == 1
    assert moved("eventfold_command_duration_seconds_count", command="account_deposit") == 2
    assert moved("eventfold_command_duration_seconds_bucket", command="account_deposit", le="+Inf") == 2
    assert moved("eventfold_events_appended_total", type="ledger.AccountOpened") == 1
    assert moved("eventfold_events_appended_total", type="ledger.FundsDeposited") == 1
    assert moved("eventfold_events_appended_total", type="ledger.FundsWithdrawn") == 0
    assert moved("eventfold_append_duration_seconds_count", category="account") == 2


def test_a_stale_if_match_counts_as_concurrency_conflict(transactional_db):
    """The conflict met by the dispatch (ConcurrencyError) is counted under the contract's code."""
    token = make_user("scraper-conflict", "operator")
    api = Api(token)
    account = open_account(api, owner="Cole Conflict")
    assert api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, if_match='"1"').status_code == 200
    labels = {"command": "account_deposit", "outcome": "concurrency_conflict"}
    before = metric_value(scrape(token), "eventfold_commands_total", **labels)
    stale = api.post(f"/api/accounts/{account}/deposits", {"amount": 5}, if_match='"1"')
    assert stale.status_code == 409 and stale.json()["error"] == "concurrency_conflict"
    assert metric_value(scrape(token), "eventfold_commands_total", **labels) - before == 1


def test_a_command_refused_for_backpressure_is_counted_and_the_state_shows_it(transactional_db, settings):
    """Commands refused with 503 backpressure count as outcome="backpressure", and while the
    published lag is above BACKPRESSURE_MAX_LAG the scrape says so."""
    from projections import flags

    token = make_user("scraper-backpressure", "operator")
    api = Api(token)
    account = open_account(api, owner="Bea Backlog")
    labels = {"command": "account_deposit", "outcome": "backpressure"}
    before = scrape(token)
    assert metric_value(before, "eventfold_backpressure_active") == 0
    flags.publish_max_lag(settings.BACKPRESSURE_MAX_LAG + 1)  # as the beat task measures it
    try:
        refused = api.post(f"/api/accounts/{account}/deposits", {"amount": 5})
        assert refused.status_code == 503 and refused.json()["error"] == "backpressure"
        during = scrape(token)
    finally:
        flags.publish_max_lag(0)
    assert (
        metric_value(during, "eventfold_commands_total", **labels)
        - metric_value(before, "eventfold_commands_total", **labels)
        == 1
    )
    assert metric_value(during, "eventfold_backpressure_active") == 1
    assert metric_value(during, "eventfold_backpressure_lag_events") == settings.BACKPRESSURE_MAX_LAG + 1
    assert metric_value(scrape(token), "eventfold_backpressure_active") == 0


def test_a_command_that_meets_a_bug_counts_as_error(transactional_db, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    broken.__name__ = "account_deposit"
    token = make_user("scraper-bug", "viewer")
    before = scrape(token)
    with pytest.raises(RuntimeError):
        commands.send(broken, Sender(actor="metrics-test"), account_id=uuid4(), amount=1)
    after = scrape(token)
    labels = {"command": "account_deposit", "outcome": "error"}
    assert (
        metric_value(after, "eventfold_commands_total", **labels)
        - metric_value(before, "eventfold_commands_total", **labels)
        == 1
    )


def test_projection_state_is_read_at_scrape_time(transactional_db):
    token = make_user("scraper-state", "viewer")
    handlers.account_open(owner="Lag Tester", currency="EUR", ctx=commands.CommandContext(actor="m"))
    behind = scrape(token)
    assert metric_value(behind, "eventfold_projection_lag_events", projection="account_summary", kind="projection") >= 1
    assert metric_value(behind, "eventfold_projection_lag_seconds", projection="account_summary", kind="projection") > 0
    assert metric_value(behind, "eventfold_state_up", part="database") == 1
    assert metric_value(behind, "eventfold_state_up", part="redis") == 1
    process = frozenset({("projection", "transfer_process"), ("kind", "process")})
    assert ("eventfold_projection_lag_events", process) in behind
    for bucket in range(64):
        while runner.catch_up(bucket).get("account_summary") == "more":
            pass
    caught_up = scrape(token)
    summary = {"projection": "account_summary", "kind": "projection"}
    assert metric_value(caught_up, "eventfold_projection_lag_events", **summary) == 0
    assert metric_value(caught_up, "eventfold_projection_parked_buckets", **summary) == 0
    assert metric_value(caught_up, "eventfold_backpressure_active") == 0
    assert metric_value(caught_up, "eventfold_backpressure_max_lag_events") == settings.BACKPRESSURE_MAX_LAG
    assert metric_value(caught_up, "eventfold_log_head_position") >= 1


def test_failed_logins_and_lockouts_are_counted(transactional_db, settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 7
    token = make_user("scraper-logins", "viewer")
    name = f"lockme{secrets.token_hex(4)}"
    get_user_model().objects.create_user(name, password="right-password-123")
    client = Client(REMOTE_ADDR=f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")
    before = scrape(token)
    statuses = [client.post("/login/", {"username": name, "password": "wrong"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    after = scrape(token)

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved("eventfold_login_failures_total", reason="credentials") == 3
    assert moved("eventfold_login_failures_total", reason="locked_out") == 1
    assert moved("eventfold_login_lockouts_total") == 1


CHILD = """
import django, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
django.setup()
from app.core import metrics
metrics.COMMANDS.labels("multiprocess_probe", "ok").inc(int(sys.argv[1]))
"""


def test_counts_of_several_processes_add_up_in_one_scrape(transactional_db):
    """Two other processes count into the run's directory (as uvicorn's and Celery's do); this
    process's scrape sums them, and still has them once they have exited."""
    token = make_user("scraper-processes", "viewer")
    before = metric_value(scrape(token), "eventfold_commands_total", command="multiprocess_probe", outcome="ok")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=settings.METRICS_DIR)
    children = [subprocess.run([sys.executable, "-c", CHILD, str(n)], env=env, cwd=ROOT, check=True) for n in (2, 5)]
    assert all(child.returncode == 0 for child in children)
    after = metric_value(scrape(token), "eventfold_commands_total", command="multiprocess_probe", outcome="ok")
    assert after - before == 7


DEFAULT_DIR_CHILD = """
import os, subprocess, sys
from django.conf import settings
print(settings.METRICS_DIR)
print(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
grandchild = "import os; print(os.environ.get('PROMETHEUS_MULTIPROC_DIR'))"
print(subprocess.run([sys.executable, "-c", grandchild], capture_output=True, text=True, check=True).stdout.strip())
"""


@pytest.mark.parametrize("env_name", ["development", "production"])
def test_without_prometheus_multiproc_dir_the_settings_choose_the_documented_default(tmp_path, env_name):
    """`uvicorn` or `celery -A app worker` started by hand, without PROMETHEUS_MULTIPROC_DIR: the
    settings choose the directory docs/operations/metrics.md names, create it, and export it, so
    the process's children (uvicorn's workers, Celery's pool) count into the same one."""
    from tests.integration.production.test_settings import production_env

    env = production_env(DJANGO_ENV=env_name, EVENTFOLD_DATA=str(tmp_path / "data"), TMPDIR=str(tmp_path))
    assert "PROMETHEUS_MULTIPROC_DIR" not in env and "EVENTFOLD_TESTING" not in env
    done = subprocess.run(
        [sys.executable, "-c", DEFAULT_DIR_CHILD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    chosen, exported, inherited = done.stdout.strip().splitlines()[-3:]
    expected = (
        tmp_path / "data" / "metrics"  # $EVENTFOLD_DATA/metrics
        if env_name == "development"
        else tmp_path / f"eventfold-metrics-{os.getuid()}"  # <temp dir>/eventfold-metrics-<uid>
    )
    assert Path(chosen).resolve() == expected.resolve()
    assert exported == inherited == chosen
    assert Path(chosen).is_dir()


def test_a_dead_process_s_live_gauges_are_forgotten_at_start(tmp_path, settings):
    """What multiprocess mode asks: gauges of a process that died without a word go at the next start."""
    settings.METRICS_DIR = str(tmp_path)
    dead = 2**22 + 12345  # above any pid Linux hands out by default
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"\0" * 16)
    (tmp_path / f"counter_{dead}.db").write_bytes(b"\0" * 16)
    metrics.prepare()
    assert not (tmp_path / f"gauge_livesum_{dead}.db").exists()
    assert (tmp_path / f"counter_{dead}.db").exists()  # its counts stay: counters never go back


def test_serve_metrics_serves_this_machine_s_counts_on_a_port_of_its_own(transactional_db):
    """For machines with workers and no web server: the same directory, summed, without a token."""
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics.COMMANDS.labels("serve_metrics_probe", "ok").inc(3)
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=settings.METRICS_DIR)
    proc = subprocess.Popen([sys.executable, "manage.py", "serve_metrics", "--port", str(port)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    samples = metric_samples(text)
    assert metric_value(samples, "eventfold_commands_total", command="serve_metrics_probe", outcome="ok") == 3
    assert not any(name == "eventfold_projection_lag_events" for name, _ in samples)  # the web servers' part


def test_the_dashboard_s_command_slots_count_ok_refused_and_errors_in_redis(transactional_db):
    """app.core.command_rate: every process adds to the same slots in Redis, which the dashboard reads."""
    import time

    from app.core import command_rate
    from projections import flags

    def totals(first: float) -> dict[str, int]:
        found = command_rate.slots(int(first), int(first) + 60)
        return {kind: sum(slot[kind] for slot in found.values()) for kind in command_rate.KINDS}

    start = time.time()
    before = totals(start)
    sender = Sender(actor="metrics-test")
    account = commands.send(handlers.account_open, sender, owner="Rae Rate", currency="EUR").stream_id
    with pytest.raises(InsufficientFunds):
        commands.send(handlers.account_withdraw, sender, account_id=account, amount=1)
    commands.send(handlers.account_deposit, sender, account_id=account, amount=1)
    command_rate.flush()  # what the timer does FLUSH_AFTER_S after the first count
    after = totals(start)
    assert {kind: after[kind] - before[kind] for kind in command_rate.KINDS} == {"ok": 2, "refused": 1, "error": 0}
    assert int(flags.client().ttl(command_rate.key(command_rate.slot_of(time.time())))) > command_rate.KEEP_S - 60
