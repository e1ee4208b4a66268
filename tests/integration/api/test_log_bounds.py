"""`GET /api/events` filtered by a rare type or a correlation id looks at a bounded stretch of the
log per request: a page that reached the bound before `limit` matches says `partial`, and its
`next` goes on from the last event it looked at. Following `next` still never skips or repeats an
event, even one whose transaction commits late."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest
from orjson import dumps

from eventstore import timeline
from eventstore.records import NewEvent
from tests.conftest import worker_database_url
from tests.support import Added, Noted

SCAN = 40


@pytest.fixture
def small_scan(monkeypatch):
    monkeypatch.setattr(timeline, "LOG_SCAN", SCAN)


def follow(api, start: str, **filters) -> tuple[list[int], list[dict]]:
    """Follow `next` from `start` until a page is neither full nor partial: (positions, pages)."""
    positions, pages, after = [], [], start
    for _ in range(100):
        page = api.get("/api/events", after=after, limit=2, **filters).json()
        pages.append(page)
        positions += [e["position"] for e in page["items"]]
        after = page["next"]
        if not page["partial"] and len(page["items"]) < 2:
            return positions, pages
    raise AssertionError("following next did not come to an end")


def the_end(api) -> str:
    """A cursor past every event earlier tests left in the log (however many)."""
    after = ""
    while True:
        page = api.get("/api/events", limit=1000, **({"after": after} if after else {})).json()
        after = page["next"]
        if len(page["items"]) < 1000:
            return after


def a_log_with_rare_events(store, correlation: str) -> list[int]:
    """Five rare events (test.Added, with `correlation` as their correlation id) among 200 common
    ones; returns the rare ones' positions."""
    stream = uuid4()
    rare, version = [], 0
    for _ in range(5):
        store.append(stream, "tally", [Noted(text="common")] * 40, expected_version=version or "no_stream")
        result = store.append(
            stream, "tally", [NewEvent(Added(amount=1), {"correlation_id": correlation})], expected_version=version + 40
        )
        version += 41
        rare.append(result.position)
    return rare


def test_a_rare_type_is_found_within_a_bounded_scan_per_page(viewer, store, small_scan):
    start = the_end(viewer)
    rare = a_log_with_rare_events(store, str(uuid4()))
    positions, pages = follow(viewer, start, type="test.Added")
    assert positions == rare  # each once, in read order
    assert any(p["partial"] and not p["items"] for p in pages)  # the bound stopped a page short
    assert len(pages) <= 205 // SCAN + 5 + 2


def test_a_correlation_id_is_found_within_a_bounded_scan_per_page(viewer, store, small_scan):
    start = the_end(viewer)
    correlation = str(uuid4())
    rare = a_log_with_rare_events(store, correlation)
    positions, pages = follow(viewer, start, correlation_id=correlation)
    assert positions == rare
    assert any(p["partial"] for p in pages)


def test_an_unfiltered_or_category_page_is_never_partial(viewer, store, small_scan):
    start = the_end(viewer)
    a_log_with_rare_events(store, str(uuid4()))
    whole = viewer.get("/api/events", after=start, limit=1000).json()
    assert len(whole["items"]) == 205 and whole["partial"] is False
    tallies = viewer.get("/api/events", after=start, limit=1000, category="tally").json()
    assert len(tallies["items"]) == 205 and tallies["partial"] is False


def test_an_event_committed_late_is_not_skipped(viewer, store, small_scan):
    """A transaction that began before the others commits its matching event last: the bounded
    pages wait for it (the horizon) and find it first, then the later ones."""
    start = the_end(viewer)
    late_stream = uuid4()
    with psycopg.connect(worker_database_url()) as late:
        late.execute(
            "INSERT INTO eventstore_event (stream_id, category, bucket, version, event_id, event_type, "
            "schema_version, data, metadata) VALUES (%s, 'tally', %s, 1, %s, 'test.Added', 1, %s, '{}')",
            [late_stream, late_stream.int % 64, uuid4(), dumps({"amount": 7}).decode()],
        )  # not committed yet: it holds the horizon
        early = a_log_with_rare_events(store, str(uuid4()))
        waiting, _ = follow(viewer, start, type="test.Added")
        assert waiting == []  # everything after the open transaction waits for it
        late.commit()
    positions, _ = follow(viewer, start, type="test.Added")
    assert len(positions) == 6 and positions[1:] == early
