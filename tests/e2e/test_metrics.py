"""GET /metrics on a live uvicorn server while a real Celery worker applies the events: the counts
of the web process (commands, appends, requests) and of the worker's pool processes (catch-up
batches) add up in one scrape, the worker's heartbeat shows, and the projections' lag gets to 0."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.integration.api.conftest import make_user
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's worker, caught up)
from tests.support import metric_samples, metric_value


def call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, raw.decode() if path == "/metrics" else json.loads(raw)


@pytest.mark.usefixtures("worker")
def test_a_live_scrape_sums_the_web_and_worker_processes_and_follows_the_projections(server):
    operator, viewer = make_user("live-operator", "operator"), make_user("live-scraper", "viewer")

    def scrape() -> dict:
        status, text = call(server, "GET", "/metrics", viewer)
        assert status == 200
        return metric_samples(text)

    before = scrape()
    status, opened = call(server, "POST", "/api/accounts", operator, {"owner": "Liv Metric", "currency": "EUR"})
    assert status == 201
    account = opened["account_id"]
    assert call(server, "POST", f"/api/accounts/{account}/deposits", operator, {"amount": 500})[0] == 200
    status, refused = call(server, "POST", f"/api/accounts/{account}/withdrawals", operator, {"amount": 9_999})
    assert (status, refused["error"]) == (422, "insufficient_funds")
    status, other = call(server, "POST", "/api/accounts", operator, {"owner": "Otto Metric", "currency": "EUR"})
    status, _ = call(
        server,
        "POST",
        "/api/transfers",
        operator,
        {"from_account": account, "to_account": other["account_id"], "amount": 5},
    )
    assert status == 202

    def caught_up() -> dict | None:
        now = scrape()
        lags = {k: v for k, v in now.items() if k[0] == "eventfold_projection_lag_events"}
        transfers = metric_value(now, "eventfold_events_appended_total", type="ledger.TransferCompleted")
        done = transfers > metric_value(before, "eventfold_events_appended_total", type="ledger.TransferCompleted")
        return now if lags and not any(lags.values()) and done else None

    after = wait_for(caught_up, timeout=60, what="every projection and process manager to catch up")

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved("eventfold_commands_total", command="account_open", outcome="ok") == 2
    assert moved("eventfold_commands_total", command="account_deposit", outcome="ok") == 1
    assert moved("eventfold_commands_total", command="account_withdraw", outcome="insufficient_funds") == 1
    assert moved("eventfold_commands_total", command="transfer_request", outcome="ok") == 1
    assert moved("eventfold_events_appended_total", type="ledger.AccountOpened") == 2
    assert moved("eventfold_events_appended_total", type="ledger.TransferRequested") == 1
    assert moved("eventfold_events_appended_total", type="ledger.TransferCompleted") == 1  # by the worker
    assert moved("eventfold_catchup_batch_duration_seconds_count", kind="projection") >= 1  # the worker's pool
    assert moved("eventfold_catchup_batch_duration_seconds_count", kind="process") >= 1
    assert moved("eventfold_http_request_duration_seconds_count", part="api", method="POST", status="201") == 2
    assert moved("eventfold_http_request_duration_seconds_count", part="api", method="POST", status="422") == 1
    summary = {"projection": "account_summary", "kind": "projection"}
    assert metric_value(after, "eventfold_projection_lag_seconds", **summary) == 0
    assert ("eventfold_projection_position", frozenset(summary.items())) in after  # its lowest bucket's
    assert metric_value(after, "eventfold_log_head_position") >= opened["position"]
    worker_name = f"test-{os.getpid()}@{os.uname().nodename}"
    beat = metric_value(after, "eventfold_worker_heartbeat_timestamp_seconds", worker=worker_name)
    assert 0 <= time.time() - beat < 30


DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "operations" / "grafana-dashboard.json"


def queried_metrics() -> set[str]:
    """Every metric name the dashboard's PromQL queries, found by parsing each expression."""
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            promql_parser.walk(promql_parser.parse(target["expr"].replace("$__rate_interval", "5m")), visit)
    return names


@pytest.mark.usefixtures("worker")
def test_every_metric_the_grafana_dashboard_queries_is_exported(server):
    """Traffic that moves every family (commands, a refusal, a transfer through the process manager,
    a rebuild), then one scrape: each name the dashboard queries is a sample in it, and a
    histogram's _bucket, _sum and _count belong to a histogram family."""
    operator, viewer = make_user("grafana-operator", "operator"), make_user("grafana-scraper", "viewer")
    _, first = call(server, "POST", "/api/accounts", operator, {"owner": "Gra Fana", "currency": "EUR"})
    _, second = call(server, "POST", "/api/accounts", operator, {"owner": "Dash Board", "currency": "EUR"})
    call(server, "POST", f"/api/accounts/{first['account_id']}/deposits", operator, {"amount": 50})
    call(server, "POST", f"/api/accounts/{first['account_id']}/withdrawals", operator, {"amount": 5_000})
    body = {"from_account": first["account_id"], "to_account": second["account_id"], "amount": 5}
    assert call(server, "POST", "/api/transfers", operator, body)[0] == 202
    assert call(server, "POST", "/api/projections/daily_totals/rebuild", operator, {})[0] == 202

    def settled() -> str | None:
        status, text = call(server, "GET", "/metrics", viewer)
        samples = metric_samples(text)
        rebuilt = metric_value(samples, "eventfold_rebuild_progress_ratio", projection="daily_totals") == 1
        idle = metric_value(samples, "eventfold_rebuild_running", projection="daily_totals") == 0
        lags = [v for k, v in samples.items() if k[0] == "eventfold_projection_lag_events"]
        return text if status == 200 and rebuilt and idle and lags and not any(lags) else None

    text = wait_for(settled, timeout=120, what="the rebuild and the catch-up to finish")
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    exported = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    wanted = queried_metrics()
    assert len(wanted) >= 20, wanted
    assert sorted(wanted - exported) == [], "queried by the dashboard but not exported"
    for name in wanted:
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in families:
                assert families[name.removesuffix(suffix)] == "histogram", name
