"""Console: the Timeline, the global log newest first.

Pages go into the past by cursor ("Older": the events before the last row's place in the read
order; the API's cursors), so paging never skips or repeats an event. On the newest page, a
poller element fetches "events newer than the first row shown" (`?after=`) whenever a hint
says the log grew, prepends them, and replaces itself with the new first row's cursor (an
out-of-band swap). Pausing is client-side (the poller stops fetching; resuming fetches what
came meanwhile) or a plain link (`?live=0`: no socket, no poller).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access
from eventstore import timeline
from eventstore.aggregate import aggregate_types
from eventstore.records import Checkpoint
from eventstore.registry import registry

PAGE = 50
LIVE_BATCH = 100  # newer events fetched at once; beyond, the page says there are more
MAX_ROWS = 300  # a live page drops its oldest rows beyond this ("Older" still reaches them)
TIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
FILTER_FIELDS = ("category", "type", "stream", "correlation", "from", "to")


class TimelineFilters(forms.Form):
    """What the page may be narrowed to; times are UTC (the console shows UTC throughout)."""

    category = forms.ChoiceField(required=False)
    type = forms.ChoiceField(required=False)
    stream = forms.UUIDField(required=False, label="Stream id")
    correlation = forms.CharField(required=False, max_length=100, label="Correlation id")
    from_ = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        input_formats=TIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )
    to = forms.DateTimeField(
        required=False,
        label="To (UTC)",
        input_formats=TIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.fields["category"].choices = [("", "any"), *((c, c) for c in sorted(aggregate_types))]
        self.fields["type"].choices = [("", "any"), *((t.name, t.name) for t in registry.types())]

    def add_prefix(self, field_name: str) -> str:
        """`from` is a keyword in Python, not in a URL: the field `from_` is `from` in the query."""
        return "from" if field_name == "from_" else super().add_prefix(field_name)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("from_", "to"):
            if cleaned.get(name) is not None:
                cleaned[name] = cleaned[name].astimezone(UTC)
        if cleaned.get("from_") and cleaned.get("to") and cleaned["from_"] >= cleaned["to"]:
            self.add_error("to", "must be after From")
        return cleaned

    def to_filters(self) -> timeline.Filters:
        c = self.cleaned_data
        return timeline.Filters(
            categories=[c["category"]] if c.get("category") else [],
            types=[c["type"]] if c.get("type") else [],
            stream_id=c.get("stream"),
            correlation_id=(c.get("correlation") or "").strip() or None,
            recorded_from=c.get("from_"),
            recorded_to=c.get("to"),
        )


class BadCursor(ValueError):
    pass


def _cursor(request: HttpRequest, name: str) -> Checkpoint | None:
    """A cursor parameter (None when absent); BadCursor when it is not one of ours."""
    raw = request.GET.get(name)
    if not raw:
        return None
    try:
        return Checkpoint.decode(raw)
    except ValueError:
        raise BadCursor(raw) from None


@access.viewer
def timeline_view(request: HttpRequest) -> HttpResponse:
    form = TimelineFilters(request.GET)
    try:
        before, after = _cursor(request, "before"), _cursor(request, "after")
        bad_cursor = False
    except BadCursor:
        before = after = None
        bad_cursor = True
    filter_query = urlencode([(k, request.GET[k]) for k in FILTER_FIELDS if request.GET.get(k)])
    valid = form.is_valid() and not bad_cursor
    filters = form.to_filters() if valid else timeline.Filters()

    if request.htmx and after is not None:  # the live poller: what is newer than the first row shown
        try:
            events = timeline.newest(after=after, limit=LIVE_BATCH, filters=filters) if valid else []
        except timeline.TooBroad:
            events = []
        if not events:
            return HttpResponse(status=204)  # nothing to swap
        context = {"events": events, "gap": len(events) == LIVE_BATCH, "new": True}
        return render(request, "console/timeline.html#live-rows", context)

    too_broad = False
    try:
        events = timeline.newest(before=before, limit=PAGE, filters=filters) if valid else []
    except timeline.TooBroad:
        events, too_broad = [], True
    live = valid and before is None and request.GET.get("live") != "0"
    newest_first = events[0].checkpoint if events else Checkpoint(0, 0)
    context: dict[str, Any] = {
        "title": "Timeline",
        "form": form,
        "bad_cursor": bad_cursor,
        "too_broad": too_broad,
        "events": events,
        "older": events[-1].checkpoint.encode() if len(events) == PAGE else None,
        "paged": before is not None,
        "live": live,
        "paused": request.GET.get("live") == "0",
        "first": newest_first.encode(),
        "max_rows": MAX_ROWS,
        "filter_query": filter_query,
        "filtered": bool(filter_query),
    }
    if live:
        context["live_topics"] = "events"
    return render(request, "console/timeline.html", context)


urlpatterns = [path("timeline/", timeline_view, name="timeline")]
