"""Console: find a stream (by id, id prefix or category), read a stream's events, and step
through an aggregate's history with the time machine.

The stream page is one template with two partials, fetched by htmx by their target's id:
"stream-events" (the event list, refreshed when the stream grows) and "tm-state" (the folded
state at a version, fetched by the slider, the prev/next links and the version list). Without
JavaScript the same page answers `?version=`, `?at=` and `?from=`.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django_htmx.http import push_url

from app.console import access
from app.console.shared import shared
from app.ledger import money, selectors
from eventstore import tracing
from eventstore.aggregate import aggregate_types
from eventstore.browse import Counts, LogBrowser, state_at
from eventstore.errors import AggregateNotFound
from eventstore.inputs import MAX_INT, parse_int
from eventstore.records import Checkpoint, RecordedEvent
from eventstore.registry import registry

STREAMS_PAGE = 50
EVENTS_PAGE = 50
VERSION_LIST_SPAN = 10  # versions listed each side of the one shown
COUNTS_TTL_S = 30
MIN_PREFIX = 4  # hex digits, for a search by the start of an id
LEDGER = ("account", "transfer")  # the categories whose events hold amounts in minor units
WIDER = 10  # how much wider "search further" looks for an event's effects and correlation


def category_counts(browser: LogBrowser) -> Counts:
    """Events per category, shared by every viewer for a few seconds (a count is never free)."""
    return shared("console:counts:category", lambda: browser.counts("category"), COUNTS_TTL_S)


def _int(value: str | None) -> int | None:
    """A stream version from the query (ASCII digits within PostgreSQL's integer), else None."""
    try:
        return parse_int(value, maximum=MAX_INT) if value else None
    except ValueError:
        return None


def _time(value: str) -> datetime | None:
    """A time from a datetime-local input (read in the console's time zone) or an ISO time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed


@access.viewer
def streams(request: HttpRequest) -> HttpResponse:
    browser = LogBrowser()
    q = request.GET.get("q", "").strip()
    category = request.GET.get("category", "").strip()
    context: dict[str, Any] = {"title": "Streams", "q": q, "category": category}
    if q:
        found = _search(browser, q)
        if isinstance(found, HttpResponse):
            return found
        context.update(found)
    counts = category_counts(browser)
    context["categories"] = [
        {"name": name, "count": counts.by_key.get(name), "aggregate": name in aggregate_types}
        for name in browser.categories()
    ]
    context["counts_exact"] = counts.exact
    if category:
        try:
            before = Checkpoint.decode(request.GET["before"]) if request.GET.get("before") else None
        except ValueError:
            before = None
        page = browser.streams(category, before=before, limit=STREAMS_PAGE)
        context.update(streams=page.streams, older=page.older, paged=before is not None)
    return render(request, "console/streams.html", context)


def _search(browser: LogBrowser, q: str) -> HttpResponse | dict[str, Any]:
    """A full id goes to its stream (or, failing that, to the event with that id); a prefix of
    at least MIN_PREFIX hex digits lists the streams it starts."""
    try:
        wanted = UUID(q)
    except ValueError:
        wanted = None
    if wanted is not None:
        if browser.stream_head(wanted) is not None:
            return redirect("console:stream", stream_id=wanted)
        if browser.event(wanted) is not None:
            return redirect("console:event", event_id=wanted)
        return {"search_error": f"No stream (and no event) has the id {wanted}."}
    digits = q.replace("-", "")
    if len(digits) < MIN_PREFIX or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return {"search_error": f"Enter a stream id, or at least {MIN_PREFIX} hex digits of one."}
    matches = browser.streams_with_prefix(digits)
    if len(matches) == 1:
        return redirect("console:stream", stream_id=matches[0])
    if not matches:
        return {"search_error": f"No stream id starts with {q}."}
    return {"matches": matches}


@access.viewer
def stream(request: HttpRequest, stream_id: UUID) -> HttpResponse:
    browser = LogBrowser()
    head = browser.stream_head(stream_id)
    if head is None:
        return render(request, "console/stream.html", {"title": "No such stream", "stream_id": stream_id}, status=404)
    category, current, last_at = head
    target = request.htmx.target if request.htmx else None
    context: dict[str, Any] = {
        "title": f"Stream {category} {str(stream_id)[:8]}",
        "stream_id": stream_id,
        "category": category,
        "current": current,
        "last_at": last_at,
        "live_topics": f"stream:{stream_id}",
        "time_machine": category in aggregate_types,
        "tombstone": browser.store.tombstone_of(stream_id),
        "archived": browser.archived(stream_id),
    }
    if target != "tm-state":
        context.update(_events_page(request, stream_id, current))
    if target == "stream-events":
        return render(request, "console/stream.html#events", context)
    if context["time_machine"]:
        context.update(_time_machine(request, stream_id, aggregate_types[category]))
    if target == "tm-state":
        response = render(request, "console/stream.html#state", context)
        if "point" in context and not context["following"]:  # the address of what is shown, for reload and back
            push_url(response, _url(stream_id, version=context["point"].version))
        return response
    return render(request, "console/stream.html", context)


def _url(stream_id: UUID, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return reverse("console:stream", args=[stream_id]) + (f"?{query}" if query else "")


def _events_page(request: HttpRequest, stream_id: UUID, current: int) -> dict[str, Any]:
    start = min(max(_int(request.GET.get("from")) or 1, 1), current)
    events = LogBrowser().store.read_stream(stream_id, from_version=start, limit=EVENTS_PAGE)
    version = request.GET.get("version")
    return {
        "events": events,
        "from": start,
        "earlier": _url(stream_id, version=version, **{"from": max(1, start - EVENTS_PAGE)}) if start > 1 else None,
        "later": _url(stream_id, version=version, **{"from": start + EVENTS_PAGE})
        if start + EVENTS_PAGE <= current
        else None,
        "events_url": _url(stream_id, **{"from": start}),
    }


def _time_machine(request: HttpRequest, stream_id: UUID, kind: type) -> dict[str, Any]:
    """The state at `?version=` or `?at=` (the latest without either), or an inline error."""
    raw_at = request.GET.get("at", "").strip()
    at = _time(raw_at) if raw_at else None
    if raw_at and at is None:
        return {"tm_error": f"{raw_at!r} is not a time: use the picker, or YYYY-MM-DDTHH:MM:SS.", "at_value": raw_at}
    try:
        point = state_at(kind, stream_id, version=_int(request.GET.get("version")), at=at)
    except AggregateNotFound:
        when = f"{at:%Y-%m-%d %H:%M:%S %Z}" if at else "that point"
        return {"tm_error": f"The stream had no events yet at {when}.", "at_value": raw_at}
    low = max(1, point.version - VERSION_LIST_SPAN)
    nearby = LogBrowser().store.read_stream(stream_id, from_version=low, to_version=point.version + VERSION_LIST_SPAN)
    currency = point.state.get("currency") or None
    now, then = money.amounts_in(point.state, currency), money.amounts_in(point.previous, currency)
    fields = [
        {
            "name": name,
            "value": _show(value),
            "money": now.get(name),
            "before": _show(point.previous.get(name)),
            "money_before": then.get(name),
            "changed": name in point.changed,
            "stream": _stream_in(value),
        }
        for name, value in point.state.items()
    ]
    return {
        "point": point,
        "fields": fields,
        "event_data": orjson.dumps(point.event.data, option=orjson.OPT_INDENT_2).decode(),
        "event_money": money.amounts_in(point.event.data, currency),
        "nearby": nearby,
        "at_value": raw_at or timezone.localtime(point.event.recorded_at).strftime("%Y-%m-%dT%H:%M:%S"),
        # the slider keeps its own value while it is dragged; other controls move it
        "move_slider": request.htmx.trigger != "tm-slider" if request.htmx else False,
        # no version or time asked for: show the latest, and keep showing it as the stream grows
        "following": not request.GET.get("version") and not raw_at,
    }


def _stream_in(value: Any) -> UUID | None:
    """The stream a field refers to (a transfer's accounts, say), so that the page can link it."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        stream_id = UUID(value)
    except ValueError:
        return None
    return stream_id if LogBrowser().stream_head(stream_id) is not None else None


def _currency(event: RecordedEvent) -> str | None:
    """The currency of the amounts an event holds: its own, or its account's."""
    if isinstance(event.data.get("currency"), str):
        return event.data["currency"]
    return selectors.account_currency(event.stream_id) if event.category == "account" else None


def _show(value: Any) -> str:
    """A state field as text: scalars as they are, lists and objects as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


@access.viewer
def event(request: HttpRequest, event_id: UUID) -> HttpResponse:
    browser = LogBrowser()
    found = browser.event(event_id)
    if found is None:
        return render(request, "console/event.html", {"title": "No such event", "event_id": event_id}, status=404)
    causation = str(found.metadata.get("causation_id") or "")
    cause = None
    if causation and causation != str(found.event_id):
        with contextlib.suppress(ValueError):  # a command's id, say, rather than an event's
            cause = browser.event(UUID(causation))
    context = {
        "title": f"Event {found.type}",
        "event": found,
        "data": orjson.dumps(found.data, option=orjson.OPT_INDENT_2).decode(),
        # an upcast event: the row as the log holds it, shown beside the data readers see
        "raw_data": orjson.dumps(found.raw_data, option=orjson.OPT_INDENT_2).decode() if found.upcast else None,
        "data_money": money.amounts_in(found.data, _currency(found) if found.category in LEDGER else None),
        "metadata": orjson.dumps(found.metadata, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode(),
        "causation": causation,
        "cause": cause,
        "neighbours": browser.neighbours(found, widen=WIDER if request.GET.get("wider") else 1),
        "wider": bool(request.GET.get("wider")),
        "registered": found.type in registry,
        **_trace(found.metadata),
    }
    return render(request, "console/event.html", context)


def _trace(metadata: dict[str, Any]) -> dict[str, str | None]:
    """The trace the event was appended in (its metadata's traceparent) and, with
    EVENTFOLD_TRACE_URL set, where a tracing UI shows it."""
    trace_id = tracing.trace_id(metadata)
    template = settings.EVENTFOLD_TRACE_URL
    return {
        "trace_id": trace_id,
        "trace_url": template.replace("{trace_id}", trace_id) if trace_id and template else None,
    }


urlpatterns = [
    path("streams/", streams, name="streams"),
    path("streams/<uuid:stream_id>/", stream, name="stream"),
    path("events/<uuid:event_id>/", event, name="event"),
]
