"""Read-model queries: the projections run here in-process (the worker tests drive them through Celery)."""

from uuid import uuid4

from projections import runner
from tests.integration.api.conftest import open_account


def catch_up_all() -> None:
    """Drain every lagging bucket (after a test's flush that is a replay of the whole test log)."""
    for bucket in runner.lagging_buckets():
        while "more" in (outcomes := runner.catch_up(bucket)).values():
            pass
        assert set(outcomes.values()) == {"drained"}, outcomes


def test_accounts_detail_list_entries(operator, viewer, settings):
    settings.CONSISTENCY_TIMEOUT_S = 0.5
    a = open_account(operator, owner="Ann Reader")
    operator.post(f"/api/accounts/{a}/deposits", {"amount": 300, "reference": "pay"})
    last = operator.post(f"/api/accounts/{a}/withdrawals", {"amount": 100}).json()
    stale = viewer.get(f"/api/accounts/{a}", consistent_with=last["position"])
    assert stale.status_code == 404 or stale.json().get("stale") is True  # nothing applies it yet
    catch_up_all()
    body = viewer.get(f"/api/accounts/{a}", consistent_with=last["position"]).json()
    assert body == {
        "account_id": a,
        "owner": "Ann Reader",
        "currency": "EUR",
        "balance": 200,
        "status": "open",
        "version": 3,
        "stale": False,
    }
    listed = viewer.get("/api/accounts", owner="ann reader").json()
    assert [x["account_id"] for x in listed["items"]] == [a]
    lines = viewer.get(f"/api/accounts/{a}/entries").json()["items"]
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in lines] == [
        ("withdrawal", -100, 200),
        ("deposit", 300, 300),
    ]


def test_account_list_pages_with_a_cursor(operator, viewer):
    tag = uuid4().hex[:8]
    ids = [open_account(operator, owner=f"Pager {tag} {i}") for i in range(5)]
    catch_up_all()
    seen, cursor = [], None
    while True:
        params = {"owner": tag, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = viewer.get("/api/accounts", **params).json()
        seen += [x["account_id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids


def test_projection_status_and_controls(operator, viewer):
    open_account(operator)
    listed = viewer.get("/api/projections").json()
    names = {p["name"] for p in listed}
    assert {"account_summary", "account_entries", "transfers", "daily_totals"} <= names
    assert all(p["status"] in ("running", "catching_up") for p in listed)
    assert viewer.post("/api/projections/transfers/pause").status_code == 403
    assert operator.post("/api/projections/transfers/pause").json()["status"] == "paused"
    assert next(p for p in viewer.get("/api/projections").json() if p["name"] == "transfers")["status"] == "paused"
    assert operator.post("/api/projections/transfers/resume").status_code == 200
    assert operator.post("/api/projections/nope/pause").status_code == 404
    catch_up_all()  # the projections' (the process manager runs on the worker only)
    assert all(p["lag"] == 0 for p in viewer.get("/api/projections").json() if p["kind"] == "projection")


def test_the_safety_net_measures_the_lag_it_publishes(operator, viewer):
    from projections import flags
    from projections.tasks import tick

    catch_up_all()
    open_account(operator)
    lagging = tick()  # what beat runs every few seconds
    assert lagging and flags.published_max_lag() >= 1
    listed = viewer.get("/api/projections").json()
    summary = next(p for p in listed if p["name"] == "account_summary")
    assert summary["lag"] >= 1 and summary["lag_seconds"] >= 0 and summary["status"] == "catching_up"
    assert sum(b["lag"] for b in summary["buckets"]) == summary["lag"]
    catch_up_all()
    tick()
    assert flags.published_max_lag() == 0
