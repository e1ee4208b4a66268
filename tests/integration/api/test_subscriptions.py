"""Named persistent subscriptions with consumer groups, on the real PostgreSQL: two consumers split
the buckets, each stream's events come in order, every event is delivered; acks move the server's
checkpoints; a consumer that stops has its buckets taken over once its lease expires, and its
unacknowledged events are delivered again (at least once)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from eventstore.records import START
from tests.integration.api.conftest import Api, open_account

LEASE_S = 2.0


@pytest.fixture(autouse=True)
def short_leases(settings):
    settings.SUBSCRIPTION_LEASE_S = LEASE_S


def fetch(api: Api, name: str, consumer: str, **params: Any) -> dict[str, Any]:
    response = api.get(f"/api/subscriptions/{name}/events", consumer=consumer, **{"limit": 1000, **params})
    assert response.status_code == 200, response.content
    return response.json()


def ack(api: Api, name: str, consumer: str, positions: dict[str, str]):
    return api.post(f"/api/subscriptions/{name}/ack", {"consumer": consumer, "positions": positions})


def plain(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fetched events as GET /api/events serves them (without their bucket and cursor)."""
    return [{k: v for k, v in e.items() if k not in ("bucket", "cursor")} for e in items]


def in_stream_order(items: list[dict[str, Any]]) -> bool:
    versions: dict[str, list[int]] = defaultdict(list)
    for e in items:
        versions[e["stream_id"]].append(e["version"])
    return all(v == sorted(v) and len(set(v)) == len(v) for v in versions.values())


def seed(operator: Api, accounts: int = 20, deposits: int = 2) -> None:
    for i in range(accounts):
        account = open_account(operator, owner=f"Owner {i}")
        for n in range(deposits):
            assert operator.post(f"/api/accounts/{account}/deposits", {"amount": n + 1}).status_code == 200


def the_log(viewer: Api, after: str | None = None, **filters: str) -> list[dict[str, Any]]:
    """GET /api/events walked to the end, from `after` (a cursor) or the start."""
    items: list[dict[str, Any]] = []
    while True:
        page = viewer.get("/api/events", limit=1000, **({"after": after} if after else {}), **filters).json()
        items += page["items"]
        if not page["items"] and not page["partial"]:
            return items
        after = page["next"]


def subscribe_at_head(operator: Api, **body: Any) -> str:
    """A subscription that starts at the head of the log (other tests' events are behind it);
    returns its checkpoint, the cursor of the head."""
    created = operator.post("/api/subscriptions", {**body, "start": "head"})
    assert created.status_code == 201, created.content
    assert created.json()["lag"] == 0
    return created.json()["checkpoint"]


def test_creating_listing_and_deleting_subscriptions(operator, viewer, anonymous):
    open_account(operator, owner="Before")
    body = {"name": "ledger-feed", "category": "account", "types": ["ledger.FundsDeposited"], "start": "head"}
    assert anonymous.post("/api/subscriptions", body).status_code == 401
    refused = viewer.post("/api/subscriptions", body)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    created = operator.post("/api/subscriptions", body)
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "ledger-feed" and created.json()["lag"] == 0
    again = operator.post("/api/subscriptions", body)
    assert again.status_code == 409 and again.json()["error"] == "subscription_exists"
    history = operator.post("/api/subscriptions", {"name": "from-the-start"})  # "start": "beginning"
    assert history.status_code == 201 and history.json()["lag"] >= 1, history.content
    assert history.json()["checkpoint"] == START.encode() != created.json()["checkpoint"]
    assert (
        operator.client.delete(
            "/api/subscriptions/from-the-start", HTTP_AUTHORIZATION=f"Bearer {operator.token}"
        ).status_code
        == 204
    )
    for bad in (
        {"name": "Has Spaces"},
        {"name": ""},
        {"name": "x", "types": ["ledger.Nope"]},
        {"name": "y" * 101},
        {"name": "z", "start": "end"},
    ):
        answer = operator.post("/api/subscriptions", bad)
        assert answer.status_code == 422 and answer.json()["error"] == "validation_error", (bad, answer.content)
    listed = viewer.get("/api/subscriptions").json()
    assert [s["name"] for s in listed] == ["ledger-feed"] and len(listed[0]["buckets"]) == 64
    one = viewer.get("/api/subscriptions/ledger-feed").json()
    assert one["category"] == "account" and one["types"] == ["ledger.FundsDeposited"]
    assert viewer.get("/api/subscriptions/nope").status_code == 404
    assert (
        viewer.client.delete("/api/subscriptions/ledger-feed", HTTP_AUTHORIZATION=f"Bearer {viewer.token}").status_code
        == 403
    )
    deleted = operator.client.delete("/api/subscriptions/ledger-feed", HTTP_AUTHORIZATION=f"Bearer {operator.token}")
    assert deleted.status_code == 204
    assert viewer.get("/api/subscriptions/ledger-feed").status_code == 404


def test_two_consumers_split_the_buckets_and_a_stopped_one_is_taken_over_after_its_lease(operator, viewer):
    head = subscribe_at_head(operator, name="feed", category="account")
    seed(operator)
    log = the_log(viewer, head, category="account")
    assert len(log) == 60

    alone = fetch(viewer, "feed", "a")  # a is alone: it takes every bucket
    assert len(alone["buckets"]) == 64 and plain(alone["items"]) == log
    b_first = fetch(viewer, "feed", "b")  # nothing free yet: a holds everything until its next fetch
    assert b_first["buckets"] == [] and b_first["items"] == []
    a = fetch(viewer, "feed", "a")  # a gives up its surplus over a fair share
    b = fetch(viewer, "feed", "b")  # which b takes
    assert len(a["buckets"]) == len(b["buckets"]) == 32 and not set(a["buckets"]) & set(b["buckets"])
    assert {e["bucket"] for e in a["items"]} <= set(a["buckets"])
    assert {e["bucket"] for e in b["items"]} <= set(b["buckets"])
    assert a["items"] and b["items"], "all streams fell into one half: reseed"
    by_id = {e["event_id"]: e for e in a["items"] + b["items"]}
    assert len(by_id) == len(a["items"]) + len(b["items"]) == len(log)  # every event, to one consumer
    assert sorted(by_id) == sorted(e["event_id"] for e in log)
    assert in_stream_order(a["items"]) and in_stream_order(b["items"])
    a_streams = {e["stream_id"] for e in a["items"]}
    assert not a_streams & {e["stream_id"] for e in b["items"]}  # a stream belongs to one consumer

    # a acknowledges what it handled: its checkpoints move on the server, its next fetch is empty
    before = viewer.get("/api/subscriptions/feed").json()
    answer = ack(viewer, "feed", "a", a["ack"])
    assert answer.status_code == 200, answer.content
    assert answer.json()["checkpoints"] == dict(sorted(a["ack"].items()))
    after = viewer.get("/api/subscriptions/feed").json()
    assert after["lag"] == before["lag"] - len(a["items"])
    checkpoints = {str(x["bucket"]): x["checkpoint"] for x in after["buckets"]}
    assert all(checkpoints[bucket] == cursor for bucket, cursor in a["ack"].items())
    assert fetch(viewer, "feed", "a")["items"] == []
    assert ack(viewer, "feed", "a", a["ack"]).status_code == 200  # acking again changes nothing

    # an ack for a bucket a does not hold is refused, whole
    lost = ack(viewer, "feed", "a", {**a["ack"], **b["ack"]})
    assert lost.status_code == 409 and lost.json()["error"] == "lease_lost"
    # and b may not ack further than it was handed
    bucket = b["items"][0]["bucket"] if b["items"] else int(next(iter(b["ack"])))
    too_far = ack(viewer, "feed", "b", {str(bucket): log[-1]["position"] and _far_cursor()})
    assert too_far.status_code == 422 and too_far.json()["error"] == "validation_error"

    # b stops without acking; once its lease expires a takes its buckets and gets b's events again
    time.sleep(LEASE_S + 0.5)
    takeover = fetch(viewer, "feed", "a")
    assert len(takeover["buckets"]) == 64
    order = [e["event_id"] for e in log]
    assert takeover["items"] == sorted(b["items"], key=lambda e: order.index(e["event_id"]))  # in read order
    assert {e["event_id"] for e in takeover["items"]} == {e["event_id"] for e in b["items"]}  # at least once
    late = ack(viewer, "feed", "b", b["ack"])
    assert late.status_code == 409 and late.json()["error"] == "lease_lost"
    assert ack(viewer, "feed", "a", takeover["ack"]).status_code == 200
    status = viewer.get("/api/subscriptions/feed").json()
    assert status["lag"] == 0 and [c["consumer"] for c in status["consumers"]] == ["a"]


def _far_cursor() -> str:
    from eventstore.records import Checkpoint

    return Checkpoint(2**62, 2**62).encode()


def test_a_filtered_subscription_moves_past_what_does_not_match(operator, viewer):
    head = subscribe_at_head(operator, name="opened", types=["ledger.AccountOpened"])
    seed(operator, accounts=6, deposits=3)
    opened = the_log(viewer, head, type="ledger.AccountOpened")
    assert len(opened) == 6
    got = fetch(viewer, "opened", "only")
    assert [e["event_id"] for e in got["items"]] == [e["event_id"] for e in opened]
    assert ack(viewer, "opened", "only", got["ack"]).status_code == 200
    assert viewer.get("/api/subscriptions/opened").json()["lag"] == 0  # the deposits were walked past too


def test_fetches_are_bounded_and_acks_one_cursor_at_a_time(operator, viewer):
    head = subscribe_at_head(operator, name="paged")
    seed(operator, accounts=3, deposits=4)
    log = the_log(viewer, head)
    assert len(log) == 15
    handled: list[dict[str, Any]] = []
    for _ in range(len(log) + 1):
        page = fetch(viewer, "paged", "solo", limit=2)
        assert len(page["items"]) <= 2
        if not page["items"]:
            break
        for event in page["items"]:
            answer = viewer.post("/api/subscriptions/paged/ack", {"consumer": "solo", "cursor": event["cursor"]})
            assert answer.status_code == 200, answer.content
        handled += page["items"]
    assert [e["event_id"] for e in handled] == [e["event_id"] for e in log]


@pytest.mark.parametrize(
    "body",
    [
        {"consumer": "c"},
        {"consumer": "c", "cursor": "x", "positions": {}},
        {"consumer": "c", "cursor": "garbage"},
        {"consumer": "c", "positions": {"64": "MS4x"}},
        {"consumer": "c", "positions": {"-1": "MS4x"}},
        {"consumer": "c", "positions": {"1": "nope"}},
        {"consumer": "Bad Name", "positions": {}},
    ],
)
def test_bad_acks_are_422(operator, viewer, body):
    assert operator.post("/api/subscriptions", {"name": "acks"}).status_code == 201
    answer = viewer.post("/api/subscriptions/acks/ack", body)
    assert answer.status_code == 422 and answer.json()["error"] == "validation_error", answer.content


def test_bad_fetches_are_4xx(operator, viewer, anonymous):
    assert operator.post("/api/subscriptions", {"name": "f"}).status_code == 201
    assert anonymous.get("/api/subscriptions/f/events", consumer="c").status_code == 401
    assert viewer.get("/api/subscriptions/nope/events", consumer="c").status_code == 404
    for params in ({}, {"consumer": "UPPER"}, {"consumer": "c", "limit": "0"}, {"consumer": "c", "wait": "99"}):
        answer = viewer.get("/api/subscriptions/f/events", **params)
        assert answer.status_code == 422 and answer.json()["error"] == "validation_error", (params, answer.content)


def test_consumers_fetching_and_acking_concurrently_while_commands_append_get_every_event(operator, viewer):
    """Real threads, each with its own database connection: two consumers fetch and ack while a
    writer appends; every event of the log is handed out and acknowledged, each fetch keeps each
    stream in order, and the subscription ends with no lag."""
    from django.db import connection

    from app.integration import subscriptions as subs

    head = subs.subscription_status(subs.subscription_create(name="busy", start="head"))["checkpoint"]
    accounts = [open_account(operator, owner=f"Busy {i}") for i in range(12)]
    writing = threading.Event()
    writing.set()
    acked: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(120):
                assert operator.post(f"/api/accounts/{accounts[n % 12]}/deposits", {"amount": 1}).status_code == 200
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.clear()
            connection.close()

    def consume(name: str) -> None:
        empty = 0
        try:
            while writing.is_set() or empty < 3:
                fetched = subs.fetch("busy", name, limit=15)
                assert in_stream_order([{"stream_id": str(e.stream_id), "version": e.version} for e in fetched.events])
                try:
                    subs.ack("busy", name, fetched.ack)
                except subs.LeaseLost:
                    continue  # the bucket moved on to the other consumer, which gets these again
                acked[name] += [{"event_id": str(e.event_id)} for e in fetched.events]
                empty = 0 if fetched.events else empty + 1
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write), *(threading.Thread(target=consume, args=(c,)) for c in "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    log = the_log(viewer, head)
    assert len(log) == 12 + 120
    assert {e["event_id"] for e in acked["a"] + acked["b"]} == {e["event_id"] for e in log}
    assert acked["a"] and acked["b"]
    assert viewer.get("/api/subscriptions/busy").json()["lag"] == 0
