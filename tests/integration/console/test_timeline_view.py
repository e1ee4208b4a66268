"""The Timeline's server side: newest first, cursor pages that never skip or repeat, filters,
the live poller's "newer than" fragment, bad input shown inline. (The browser test covers the
live prepend and pause; these run without a worker: the timeline reads the log, not a projection.)"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from app.console.views import log as timeline_view
from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore import timeline
from tests.conftest import wait_for

ROW = re.compile(r'<tr data-cursor="([^"]+)"[^>]*>\s*<td class="num"><a href="/events/([0-9a-f-]+)/">(\d+)</a>')


def ctx(**kw) -> CommandContext:
    return CommandContext(actor="timeline-test", **kw)


def rows(response) -> list[int]:
    """The positions shown, in page order."""
    return [int(m.group(3)) for m in ROW.finditer(response.content.decode())]


@pytest.fixture
def viewer(transactional_db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_user("tina"))
    return client


@pytest.fixture
def account(transactional_db) -> uuid.UUID:
    """One account stream with 1 + 59 events."""
    account_id = handlers.account_open(account_id=uuid.uuid4(), owner="Tim", currency="EUR", ctx=ctx()).stream_id
    for i in range(59):
        handlers.account_deposit(account_id=account_id, amount=i + 1, ctx=ctx())
    newest = lambda: timeline.newest(limit=1, filters=timeline.Filters(stream_id=account_id))  # noqa: E731
    wait_for(lambda: newest() and newest()[0].version == 60, what="the stream below the read horizon")
    return account_id


def test_anonymous_visitors_are_sent_to_log_in(client, transactional_db):
    response = client.get("/timeline/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_newest_first_and_older_pages_neither_skip_nor_repeat(viewer, account, monkeypatch):
    monkeypatch.setattr(timeline_view, "PAGE", 25)
    seen: list[int] = []
    url = f"/timeline/?stream={account}"
    for _ in range(5):
        response = viewer.get(url)
        assert response.status_code == 200
        seen += rows(response)
        older = re.search(r'id="timeline-older" href="([^"]*)"', response.content.decode()).group(1)
        if not older:
            break
        url = older.replace("&amp;", "&")
    assert len(seen) == 60
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 60
    page = viewer.get(url).content.decode()
    assert "Newest events" in page and "ws-connect" not in page  # an older page is not live


def test_the_newest_page_is_live_unless_paused_by_link(viewer, account):
    live = viewer.get("/timeline/").content.decode()
    assert 'ws-connect="/ws/live/?topics=events"' in live and 'id="timeline-live"' in live
    assert "?live=0" in live  # the pause link works without JavaScript
    paused = viewer.get("/timeline/?live=0").content.decode()
    assert "ws-connect" not in paused and 'id="timeline-live"' not in paused
    assert "Resume live updates" in paused


def test_the_poller_gets_only_what_is_newer_than_the_first_row(viewer, account):
    page = viewer.get(f"/timeline/?stream={account}")
    first_cursor = ROW.search(page.content.decode()).group(1)
    assert viewer.get(f"/timeline/?stream={account}&after={first_cursor}", HTTP_HX_REQUEST="true").status_code == 204
    handlers.account_deposit(account_id=account, amount=5, ctx=ctx())
    handlers.account_deposit(account_id=account, amount=6, ctx=ctx())
    # Below the read horizon only: another session's open transaction may hold it back for a moment.
    newer = wait_for(
        lambda: (
            (r := viewer.get(f"/timeline/?stream={account}&after={first_cursor}", HTTP_HX_REQUEST="true")).status_code
            == 200
            and len(rows(r)) == 2
            and r
        ),
        what="the new events below the horizon",
    )
    assert "<html" not in newer.content.decode()  # a fragment: rows only
    shown = rows(newer)
    assert len(shown) == 2 and shown[0] > shown[1] > rows(page)[0]


def test_filters_by_type_category_correlation_and_time(viewer, account):
    correlation = uuid.uuid4()
    handlers.account_withdraw(account_id=account, amount=3, ctx=ctx(correlation_id=correlation))
    only_withdrawals = viewer.get(f"/timeline/?stream={account}&type=ledger.FundsWithdrawn").content.decode()
    assert only_withdrawals.count("ledger.FundsWithdrawn</a>") == 1
    assert "ledger.FundsDeposited</a>" not in only_withdrawals
    by_correlation = viewer.get(f"/timeline/?correlation={correlation}")
    assert len(rows(by_correlation)) == 1
    transfers_only = viewer.get(f"/timeline/?stream={account}&category=transfer")
    assert rows(transfers_only) == [] and "No events match these filters." in transfers_only.content.decode()
    future = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert len(rows(viewer.get(f"/timeline/?stream={account}&from={past}&to={future}"))) == 50  # a full page
    assert rows(viewer.get(f"/timeline/?stream={account}&from={future}")) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("stream=not-a-uuid", "Enter a valid UUID."),
        ("from=2024-05-02T10:00&to=2024-05-01T10:00", "must be after From"),
        ("type=no.SuchType", "Select a valid choice."),
        ("before=%%%", "That page link is not valid any more."),
    ],
)
def test_bad_input_is_explained_inline(viewer, transactional_db, query, message):
    response = viewer.get(f"/timeline/?{query}")
    assert response.status_code == 200
    assert message in response.content.decode()
    assert rows(response) == []


def test_a_read_that_gives_up_on_a_big_log_is_explained(viewer, monkeypatch):
    def too_broad(**kwargs):
        raise timeline.TooBroad("statement timeout")

    monkeypatch.setattr(timeline, "newest", too_broad)
    response = viewer.get("/timeline/?correlation=rare")
    assert response.status_code == 200
    assert "match too few of the newest events" in response.content.decode()
    assert viewer.get("/timeline/?after=MC4w", HTTP_HX_REQUEST="true").status_code == 204
