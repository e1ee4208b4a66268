"""The console's stream finder, stream page with the time machine, event detail and catalog,
through Django's test client against the real event store."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from app.core.models import Profile
from app.ledger import handlers
from app.ledger.commands import CommandContext
from eventstore import browse
from eventstore.browse import LogBrowser
from eventstore.records import Checkpoint, NewEvent
from tests.conftest import owner_cursor
from tests.support import Added, Noted, Opened

DEPOSITS = (1_500, 2_500, 4_000)


def client_for(role: str) -> Client:
    user, _ = get_user_model().objects.get_or_create(username=f"console-{role}")
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(transactional_db) -> Client:
    for key in ("console:counts:category", "console:counts:event_type"):  # never flush: the broker shares it
        cache.delete(key)
    return client_for("viewer")


@pytest.fixture
def account(transactional_db) -> UUID:
    """An account opened by its owner with three deposits: versions 1 to 4."""
    account_id = uuid4()
    ctx = CommandContext(actor="test")
    handlers.account_open(account_id=account_id, owner="Ann Example", currency="EUR", ctx=ctx)
    for amount in DEPOSITS:
        handlers.account_deposit(account_id=account_id, amount=amount, ctx=CommandContext(actor="test"))
    return account_id


def stream_url(stream_id: UUID, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse("console:stream", args=[stream_id]) + (f"?{query}" if query else "")


def field_row(html: str, name: str) -> str:
    match = re.search(rf'<tr data-field="{name}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row for field {name}"
    return match.group(0)


def shown_value(html: str, name: str) -> str:
    """A state field's stored value (an amount is also shown as money beside it)."""
    return re.search(r'<td class="mono value"><span class="stored">(.*?)</span>', field_row(html, name), re.S).group(1)


def events_of(column: str, value: str) -> int:
    """The exact count, straight from the table (the log is shared by the session's tests)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM eventstore_event WHERE {column} = %s", [value])
        return cur.fetchone()[0]


def catalog_count(html: str, event_type: str) -> str:
    row = re.search(rf'<tr id="{re.escape(event_type)}">(.*?)</tr>', html, re.S).group(1)
    return re.sub(r"<[^>]+>", "", re.search(r'<td class="num">(.*?)</td>', row, re.S).group(1)).strip()


def highlighted(html: str) -> set[str]:
    return set(re.findall(r'<tr data-field="(\w+)" class="diff-changed"', html))


# -- access ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["streams", "stream", "event", "catalog"])
def test_anonymous_visitors_are_sent_to_log_in(transactional_db, name):
    args = [uuid4()] if name in ("stream", "event") else []
    response = Client().get(reverse(f"console:{name}", args=args))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


# -- streams -----------------------------------------------------------------------------------
def test_categories_and_a_categorys_streams_newest_first(viewer, account):
    second = uuid4()
    handlers.account_open(account_id=second, owner="Bo", currency="EUR", ctx=CommandContext(actor="test"))
    page = viewer.get(reverse("console:streams"))
    assert page.status_code == 200
    html = page.content.decode()
    counted = re.search(r'\?category=account".*?<td class="num">(\d+)</td>', html, re.S)
    assert counted and int(counted.group(1)) == events_of("category", "account")  # small log: exact

    listed = viewer.get(reverse("console:streams"), {"category": "account"}).content.decode()
    assert listed.index(str(second)) < listed.index(str(account))  # newest first
    assert re.search(rf"{account}</a></td>\s*<td class=\"num\">4</td>", listed)  # its version


def test_the_streams_of_a_category_page_with_a_cursor(viewer, monkeypatch):
    from app.console.views import streams as view

    monkeypatch.setattr(view, "STREAMS_PAGE", 2)
    ids = [uuid4() for _ in range(3)]
    for i in ids:
        handlers.account_open(account_id=i, owner="X", currency="EUR", ctx=CommandContext(actor="test"))
    first = viewer.get(reverse("console:streams"), {"category": "account"}).content.decode()
    assert str(ids[2]) in first and str(ids[1]) in first and str(ids[0]) not in first
    older = re.search(r'href="([^"]*before=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = viewer.get(older).content.decode()
    assert str(ids[0]) in second and str(ids[1]) not in second and str(ids[2]) not in second


def test_a_page_of_streams_looks_at_a_bounded_number_of_events(viewer, monkeypatch):
    monkeypatch.setattr(browse, "STREAM_SCAN", 3)
    old, busy = uuid4(), uuid4()
    handlers.account_open(account_id=old, owner="Old", currency="EUR", ctx=CommandContext(actor="test"))
    handlers.account_open(account_id=busy, owner="Busy", currency="EUR", ctx=CommandContext(actor="test"))
    for amount in (1, 2, 3):
        handlers.account_deposit(account_id=busy, amount=amount, ctx=CommandContext(actor="test"))
    first = LogBrowser().streams("account", limit=5)
    assert first.streams == [] and first.older  # three deposits looked at, no stream began among them
    second = LogBrowser().streams("account", before=Checkpoint.decode(first.older), limit=5)
    assert [s.stream_id for s in second.streams][:2] == [busy, old]  # then the streams they belong to
    html = viewer.get(reverse("console:streams"), {"category": "account"}).content.decode()
    assert "Look further back" in html


def test_search_by_id_goes_to_the_stream_and_an_unknown_id_says_so(viewer, account):
    found = viewer.get(reverse("console:streams"), {"q": str(account)})
    assert found.status_code == 302 and found["Location"] == reverse("console:stream", args=[account])
    by_prefix = viewer.get(reverse("console:streams"), {"q": str(account)[:13]})
    assert by_prefix["Location"] == reverse("console:stream", args=[account])

    unknown = uuid4()
    missing = viewer.get(reverse("console:streams"), {"q": str(unknown)})
    assert missing.status_code == 200
    assert f"No stream (and no event) has the id {unknown}" in missing.content.decode()
    assert "at least 4 hex digits" in viewer.get(reverse("console:streams"), {"q": "xyz"}).content.decode()


def test_search_by_an_event_id_goes_to_the_event(viewer, account):
    [first] = LogBrowser().store.read_stream(account, limit=1)
    response = viewer.get(reverse("console:streams"), {"q": str(first.event_id)})
    assert response["Location"] == reverse("console:event", args=[first.event_id])


# -- stream page and time machine --------------------------------------------------------------
def test_an_unknown_stream_is_404(viewer):
    response = viewer.get(stream_url(uuid4()))
    assert response.status_code == 404
    assert "No stream has the id" in response.content.decode()


def test_the_stream_page_lists_its_events_in_version_order_and_subscribes_to_the_stream(viewer, account):
    html = viewer.get(stream_url(account)).content.decode()
    types = re.findall(r'<td><a href="/events/[^"]+/">(ledger\.\w+)</a></td>', html)
    assert types == ["ledger.AccountOpened"] + ["ledger.FundsDeposited"] * 3
    assert f"topics=stream:{account}" in html
    assert f'hx-trigger="live:stream-{account} from:body' in html


def test_the_time_machine_at_version_2_shows_the_first_deposit_and_highlights_the_balance(viewer, account):
    html = viewer.get(stream_url(account, version=2)).content.decode()
    assert shown_value(html, "balance") == str(DEPOSITS[0])
    assert highlighted(html) == {"balance"}  # only the balance changed from version 1
    assert "Version 2 of 4" in html
    assert "ledger.FundsDeposited" in html.split('id="tm-state"')[1]  # the event that made it, beside

    latest = viewer.get(stream_url(account)).content.decode()
    assert shown_value(latest, "balance") == str(sum(DEPOSITS))
    opened = viewer.get(stream_url(account, version=1)).content.decode()
    assert shown_value(opened, "balance") == "0"
    assert {"owner", "currency"} <= highlighted(opened) and "balance" not in highlighted(opened)


def test_the_time_machine_at_a_time_between_two_deposits(viewer, account):
    events = LogBrowser().store.read_stream(account)
    between = events[2].recorded_at + (events[3].recorded_at - events[2].recorded_at) / 2
    html = viewer.get(stream_url(account, at=between.strftime("%Y-%m-%dT%H:%M:%S.%f"))).content.decode()
    assert "Version 3 of 4" in html
    assert shown_value(html, "balance") == str(DEPOSITS[0] + DEPOSITS[1])

    before = (events[0].recorded_at - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert "had no events yet" in viewer.get(stream_url(account, at=before)).content.decode()
    assert "is not a time" in viewer.get(stream_url(account, at="yesterday")).content.decode()


def test_a_field_that_names_a_stream_links_to_it(viewer, account):
    other, transfer = uuid4(), uuid4()
    handlers.account_open(account_id=other, owner="Bo", currency="EUR", ctx=CommandContext(actor="test"))
    handlers.transfer_request(
        transfer_id=transfer, from_account=account, to_account=other, amount=100, ctx=CommandContext(actor="test")
    )
    html = viewer.get(stream_url(transfer, version=1)).content.decode()
    assert reverse("console:stream", args=[account]) in field_row(html, "from_account")
    assert reverse("console:stream", args=[other]) in field_row(html, "to_account")
    assert "<a " not in field_row(html, "currency")


def test_htmx_gets_the_state_fragment_and_the_address_to_push(viewer, account):
    response = viewer.get(stream_url(account, version=3), headers={"HX-Request": "true", "HX-Target": "tm-state"})
    html = response.content.decode()
    assert "<html" not in html and html.lstrip().startswith('<div id="tm-state"')
    assert shown_value(html, "balance") == str(DEPOSITS[0] + DEPOSITS[1])
    assert response["HX-Push-Url"] == stream_url(account, version=3)
    assert 'id="tm-slider"' in html and 'hx-swap-oob="true"' in html  # a link moved: so does the slider

    dragged = viewer.get(
        stream_url(account, version=3),
        headers={"HX-Request": "true", "HX-Target": "tm-state", "HX-Trigger": "tm-slider"},
    ).content.decode()
    assert 'id="tm-slider"' not in dragged  # never swap the slider under the user's pointer
    assert "live:stream-" not in html  # a chosen version stays put


def test_the_latest_state_follows_the_stream(viewer, account):
    fragment = {"HX-Request": "true", "HX-Target": "tm-state"}
    before = viewer.get(stream_url(account), headers=fragment)
    assert f'hx-trigger="live:stream-{account} from:body' in before.content.decode()
    assert "HX-Push-Url" not in before  # the address stays the stream's own
    handlers.account_withdraw(account_id=account, amount=500, ctx=CommandContext(actor="test"))
    after = viewer.get(stream_url(account), headers=fragment).content.decode()
    assert "Version 5 of 5" in after and shown_value(after, "balance") == str(sum(DEPOSITS) - 500)
    assert 'max="5" value="5"' in after  # and the slider with it


def test_htmx_refreshes_the_event_list_when_the_stream_grows(viewer, account):
    headers = {"HX-Request": "true", "HX-Target": "stream-events"}
    before = viewer.get(stream_url(account), headers=headers).content.decode()
    assert before.lstrip().startswith('<section class="panel" id="stream-events"') and 'id="tm-state"' not in before
    handlers.account_withdraw(account_id=account, amount=100, ctx=CommandContext(actor="test"))
    after = viewer.get(stream_url(account), headers=headers).content.decode()
    assert "ledger.FundsWithdrawn" in after and "ledger.FundsWithdrawn" not in before


def test_a_long_stream_is_paged(viewer, account, monkeypatch):
    from app.console.views import streams as view

    monkeypatch.setattr(view, "EVENTS_PAGE", 2)
    first = viewer.get(stream_url(account)).content.decode()
    assert "Later versions" in first and "Earlier versions" not in first
    second = viewer.get(stream_url(account, **{"from": 3})).content.decode()
    types = re.findall(r'<td><a href="/events/[^"]+/">(ledger\.\w+)</a></td>', second)
    assert types == ["ledger.FundsDeposited"] * 2 and "Earlier versions" in second


def test_a_category_without_an_aggregate_type_has_events_but_no_time_machine(viewer):
    stream_id = uuid4()
    LogBrowser().store.append(stream_id, "notes", [Noted(text="hello")])
    html = viewer.get(stream_url(stream_id)).content.decode()
    assert "test.Noted" in html and 'id="tm-state"' not in html
    assert "not a registered aggregate type" in html


# -- event detail ------------------------------------------------------------------------------
def test_an_unknown_event_is_404(viewer):
    response = viewer.get(reverse("console:event", args=[uuid4()]))
    assert response.status_code == 404 and "No event has the id" in response.content.decode()


def test_an_expired_event_is_404_before_enforce_retention_deletes_it(viewer, settings):
    """Retention is stream metadata every reader respects at once: the event's own page too."""
    settings.EVENTFOLD_RETENTION = {"expiring": {"max_count": 2}}
    stream_id, ids = uuid4(), [uuid4() for _ in range(4)]
    correlation = str(uuid4())
    LogBrowser().store.append(
        stream_id,
        "expiring",
        [NewEvent(Added(amount=i), {"correlation_id": correlation}, event_id) for i, event_id in enumerate(ids, 1)],
    )
    assert viewer.get(reverse("console:event", args=[ids[0]])).status_code == 404
    kept = viewer.get(reverse("console:event", args=[ids[3]]))
    assert kept.status_code == 200
    correlated = kept.content.decode().split("Same correlation id")[1]
    assert str(ids[2]) in correlated and str(ids[1]) not in correlated  # its expired neighbours are gone too


def test_exact_counts_leave_expired_events_out(viewer):
    from eventstore.retention import Rule
    from eventstore.store import EventStore

    category = f"expiring{uuid4().hex[:8]}"  # the log keeps other tests' events: a category of its own
    store = EventStore(retention=(Rule(category, max_count=2),))
    store.append(uuid4(), category, [Added(amount=i) for i in range(1, 5)])
    assert LogBrowser(store).counts("category").by_key[category] == 2
    assert LogBrowser(EventStore(retention=())).counts("category").by_key[category] == 4


def test_event_detail_links_its_cause_its_effects_and_its_correlation(viewer):
    store = LogBrowser().store
    correlation, cause_id, effect_id, unrelated_id = str(uuid4()), uuid4(), uuid4(), uuid4()
    one, two = uuid4(), uuid4()
    store.append(one, "tally", [NewEvent(Opened(name="a"), {"correlation_id": correlation}, cause_id)])
    store.append(
        two,
        "tally",
        [NewEvent(Opened(name="b"), {"correlation_id": correlation, "causation_id": str(cause_id)}, effect_id)],
    )
    store.append(uuid4(), "tally", [NewEvent(Added(amount=1), {"correlation_id": str(uuid4())}, unrelated_id)])

    cause = viewer.get(reverse("console:event", args=[cause_id])).content.decode()
    caused = cause.split("Events it caused")[1].split("Same correlation id")[0]
    assert str(effect_id) in caused and str(unrelated_id) not in caused
    correlated = cause.split("Same correlation id")[1]
    assert str(effect_id) in correlated and str(unrelated_id) not in correlated
    assert "&quot;name&quot;: &quot;a&quot;" in cause and correlation in cause  # data and metadata, pretty
    assert reverse("console:stream", args=[one]) in cause

    effect = viewer.get(reverse("console:event", args=[effect_id])).content.decode()
    caused_by = effect.split("Caused by")[1].split("</tr>")[0]
    assert reverse("console:event", args=[cause_id]) in caused_by


def test_an_event_caused_by_a_command_names_the_command(viewer, account):
    [opened] = LogBrowser().store.read_stream(account, limit=1)
    html = viewer.get(reverse("console:event", args=[opened.event_id])).content.decode()
    assert "the command OpenAccount" in html
    assert "<strong>ledger.AccountOpened" not in html and "ledger.AccountOpened" in html
    assert "Ann Example" in html  # personal data, readable while the key exists


def test_the_neighbour_scan_is_bounded_by_a_window_of_positions(viewer, monkeypatch):
    monkeypatch.setattr(browse, "NEIGHBOURS_AFTER", 2)
    store = LogBrowser().store
    cause_id, near_id, far_id = uuid4(), uuid4(), uuid4()
    store.append(uuid4(), "tally", [NewEvent(Opened(name="a"), {}, cause_id)])
    store.append(uuid4(), "tally", [NewEvent(Opened(name="n"), {"causation_id": str(cause_id)}, near_id)])
    store.append(uuid4(), "tally", [NewEvent(Opened(name=str(i))) for i in range(3)])
    store.append(uuid4(), "tally", [NewEvent(Opened(name="f"), {"causation_id": str(cause_id)}, far_id)])
    found = LogBrowser().neighbours(LogBrowser().event(cause_id))
    assert [e.event_id for e in found.caused] == [near_id]
    wider = LogBrowser().neighbours(LogBrowser().event(cause_id), widen=3)
    assert [e.event_id for e in wider.caused] == [near_id, far_id]
    html = viewer.get(reverse("console:event", args=[cause_id])).content.decode()
    assert str(far_id) not in html and f"/events/{cause_id}/?wider=1" in html
    assert str(far_id) in viewer.get(reverse("console:event", args=[cause_id]), {"wider": "1"}).content.decode()


# -- catalog -----------------------------------------------------------------------------------
def test_the_catalog_lists_types_schemas_counts_and_consumers(viewer, account):
    html = viewer.get(reverse("console:catalog")).content.decode()
    assert catalog_count(html, "ledger.FundsDeposited") == str(events_of("event_type", "ledger.FundsDeposited"))
    deposited = re.search(r'<tr id="ledger.FundsDeposited">(.*?)</tr>', html, re.S).group(1)
    assert "<details>" in deposited and "&quot;amount&quot;" in deposited  # the JSON schema
    assert re.search(r'<span class="badge">projection</span> <a href="/projections/">\w+</a>', deposited)
    requested = re.search(r'<tr id="ledger.TransferRequested">(.*?)</tr>', html, re.S).group(1)
    assert "transfer_process" in requested
    assert "personal data: owner" in re.search(r'<tr id="ledger.AccountOpened">(.*?)</tr>', html, re.S).group(1)


def test_counts_are_cached_for_a_while(viewer, account):
    before = events_of("event_type", "ledger.FundsDeposited")
    assert catalog_count(viewer.get(reverse("console:catalog")).content.decode(), "ledger.FundsDeposited") == str(
        before
    )
    handlers.account_deposit(account_id=account, amount=1, ctx=CommandContext(actor="test"))
    html = viewer.get(reverse("console:catalog")).content.decode()
    assert catalog_count(html, "ledger.FundsDeposited") == str(before)  # still the cached count
    cache.delete("console:counts:event_type")
    html = viewer.get(reverse("console:catalog")).content.decode()
    assert catalog_count(html, "ledger.FundsDeposited") == str(before + 1)


def test_on_a_big_log_counts_are_estimated_from_statistics(transactional_db, account, monkeypatch):
    with owner_cursor() as cur:  # only the table's owner may ANALYZE it
        cur.execute("ANALYZE eventstore_event")
    exact = LogBrowser().counts("event_type")
    monkeypatch.setattr(browse, "EXACT_COUNT_BELOW", 0)
    estimated = LogBrowser().counts("event_type")
    assert exact.exact and not estimated.exact
    assert estimated.by_key["ledger.FundsDeposited"] == exact.by_key["ledger.FundsDeposited"]  # all rows sampled


def test_viewers_see_every_page(viewer, account):
    [first] = LogBrowser().store.read_stream(account, limit=1)
    for url in (
        reverse("console:streams"),
        stream_url(account),
        reverse("console:event", args=[first.event_id]),
        reverse("console:catalog"),
    ):
        started = time.monotonic()
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert time.monotonic() - started < 2, url


def test_the_stream_page_says_a_stream_is_tombstoned(viewer):
    sid = uuid4()
    store = LogBrowser().store
    store.append(sid, "tally", [Opened(name="a"), Added(amount=1)])
    page = viewer.get(reverse("console:stream", args=[sid])).content.decode()
    assert 'id="tombstone"' not in page
    store.tombstone(sid, reason="finished")
    page = viewer.get(reverse("console:stream", args=[sid])).content.decode()
    assert 'id="tombstone"' in page and "tombstoned" in page and "finished" in page
    assert "No events in this range." not in page and "test.Added" in page  # its history is still listed


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_the_stream_page_shows_an_archived_stream_and_its_events(viewer):
    from eventstore import roles
    from eventstore.store import EventStore

    sid = uuid4()
    store = LogBrowser().store
    store.append(sid, "tally", [Opened(name="a"), Added(amount=1)])
    store.tombstone(sid)
    assert 'id="archived"' not in viewer.get(reverse("console:stream", args=[sid])).content.decode()
    EventStore(using=roles.migrating_alias()).archive([sid])
    response = viewer.get(reverse("console:stream", args=[sid]))
    page = response.content.decode()
    assert response.status_code == 200 and 'id="archived"' in page and "test.Added" in page
