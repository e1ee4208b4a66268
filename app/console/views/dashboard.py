"""Console: the Dashboard. The log's activity over the last minutes (an SVG chart rendered on
the server, re-fetched on live hints) and beside it the commands' rate and error rate (counted
per slot in Redis by every process that sends commands: app.core.command_rate), totals,
projection health at a glance, and whether the broker and the workers answer.

Every part is a partial of one template, fetched on its own (`?part=chart`) when a hint says it
may have changed. What they show is the same for every role, so reads are shared between pages
for a second per process (app.core.health.cached), and all stay bounded on a big log: the chart
counts only the last minutes through the BRIN index on `recorded_at` (and on each fetch only
the last 20 seconds, see activity()), totals are estimated once the log is big
(eventstore.timeline.totals).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from app.console import access
from app.core import command_rate
from app.core.health import cached, health
from app.ledger.models import AccountSummary, TransferSummary
from app.ledger.selectors import STATUSES, TRANSFER_STATUSES
from eventstore import timeline
from projections import status

SLOT = timedelta(seconds=10)
SPAN = timedelta(minutes=10)
SHARED_FOR_S = 1.0  # totals and projection health: shared by every page for this long
OLDER_SLOTS_FOR_S = SLOT.total_seconds()  # see activity()
# The chart's geometry (SVG user units) and its colours, one per event type (the rest: "other").
WIDTH, HEIGHT, LEFT, BOTTOM = 1200, 200, 48, 18
PALETTE = ["#2456c9", "#17803d", "#b26b00", "#b42318", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f"]
OTHER_COLOUR = "#9ca3af"
PARTS = ("stats", "chart", "commands", "projections", "health")
# The command chart beside it: the same slots, commands stacked by kind (ok, refused, error).
COMMAND_WIDTH, COMMAND_HEIGHT = 400, 200
COMMAND_COLOURS = {"ok": "#2456c9", "refused": "#b26b00", "error": "#b42318"}


def totals() -> dict[str, Any]:
    log = timeline.totals()
    accounts = dict(AccountSummary.objects.values_list("status").annotate(n=Count("*")))
    transfers = dict(TransferSummary.objects.values_list("status").annotate(n=Count("*")))
    return {
        "events": log.events,
        "streams": log.streams,
        "exact": log.exact,
        "accounts": [(s, accounts.get(s, 0)) for s in STATUSES],
        "accounts_total": sum(accounts.values()),
        "transfers": [(s, transfers.get(s, 0)) for s in TRANSFER_STATUSES],
        "transfers_total": sum(transfers.values()),
    }


def _slot_start(at: datetime) -> datetime:
    return datetime.fromtimestamp(at.timestamp() // SLOT.seconds * SLOT.seconds, tz=UTC)


def activity(now: datetime) -> list[tuple[datetime, str, int]]:
    """(slot, type, count) over the last SPAN. Older slots no longer change (but for a rare late
    commit): they are counted once per OLDER_SLOTS_FOR_S per process; only the last full slot and the
    current one are counted on every request, so a fetch after each hint stays cheap and fresh."""
    recent = _slot_start(now) - SLOT
    older = cached(
        "dashboard.activity", OLDER_SLOTS_FOR_S, lambda: timeline.activity(since=_slot_start(now - SPAN), slot=SLOT)
    )
    return [row for row in older if row[0] < recent] + timeline.activity(since=recent, slot=SLOT)


def chart(now: datetime) -> dict[str, Any]:
    """Stacked bars per SLOT over the last SPAN, one colour per event type (the busiest first)."""
    slots = int(SPAN / SLOT)  # full slots, then the current one
    first = _slot_start(now - SPAN)
    rows = activity(now)
    per_type: dict[str, int] = defaultdict(int)
    for _, event_type, n in rows:
        per_type[event_type] += n
    ranked = sorted(per_type, key=lambda t: (-per_type[t], t))
    colour = {t: PALETTE[i] for i, t in enumerate(ranked[: len(PALETTE)])}
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for start, event_type, n in rows:
        index = int((start - first) / SLOT)
        if 0 <= index <= slots:
            counts[index][event_type if event_type in colour else "other"] += n
    tallest = max((sum(c.values()) for c in counts.values()), default=0)
    scale = (HEIGHT - BOTTOM - 8) / tallest if tallest else 0
    bar = (WIDTH - LEFT) / (slots + 1)
    rects = []
    for index, by_type in sorted(counts.items()):
        y = HEIGHT - BOTTOM
        start = first + index * SLOT
        for event_type in [*ranked[: len(PALETTE)], "other"]:
            n = by_type.get(event_type, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            rects.append(
                {
                    "x": round(LEFT + index * bar + 1, 1),
                    "y": round(y, 1),
                    "w": round(bar - 2, 1),
                    "h": round(max(h, 0.5), 1),
                    "fill": colour.get(event_type, OTHER_COLOUR),
                    "title": f"{start:%H:%M:%S}: {n} {event_type} ({n / SLOT.seconds:g}/s)",
                }
            )
    ticks = [
        {"x": round(LEFT + i * bar, 1), "label": f"-{(slots - i) * SLOT.seconds // 60} min", "anchor": "start"}
        for i in range(0, slots, 12)
    ]
    ticks.append({"x": WIDTH, "label": "now", "anchor": "end"})
    last_full = sum(counts.get(slots - 1, {}).values())
    legend = [(t, colour[t], per_type[t]) for t in ranked[: len(PALETTE)]]
    if len(ranked) > len(PALETTE):
        legend.append(("other", OTHER_COLOUR, sum(per_type[t] for t in ranked[len(PALETTE) :])))
    return {
        "rects": rects,
        "ticks": ticks,
        "legend": legend,
        "tallest_per_s": f"{tallest / SLOT.seconds:g}",
        "rate_now": f"{last_full / SLOT.seconds:g}",
        "rate_avg": f"{sum(per_type.values()) / SPAN.total_seconds():.2f}",
        "total": sum(per_type.values()),
        "width": WIDTH,
        "height": HEIGHT,
        "axis_y": HEIGHT - BOTTOM,
        "left": LEFT,
    }


def command_chart(now: datetime) -> dict[str, Any]:
    """Commands per SLOT over the last SPAN (app.core.command_rate, counted by every process that
    sends commands), stacked: ok, refused (4xx), error (5xx); the rates of the last full slot and the
    error rate over the span. `available` is False while Redis cannot be read."""
    slots = int(SPAN / SLOT)
    first = _slot_start(now - SPAN)
    try:
        counts = command_rate.slots(int(first.timestamp()), int(now.timestamp()))
    except Exception:
        return {"available": False}
    by_index = {int((start - first.timestamp()) // SLOT.seconds): kinds for start, kinds in counts.items()}
    tallest = max((sum(k.values()) for k in by_index.values()), default=0)
    scale = (COMMAND_HEIGHT - BOTTOM - 8) / tallest if tallest else 0
    bar = COMMAND_WIDTH / (slots + 1)
    rects = []
    for index, kinds in sorted(by_index.items()):
        y = COMMAND_HEIGHT - BOTTOM
        start = first + index * SLOT
        for kind in command_rate.KINDS:
            n = kinds.get(kind, 0)
            if not n:
                continue
            h = n * scale
            y -= h
            rects.append(
                {
                    "x": round(index * bar, 1),
                    "y": round(y, 1),
                    "w": round(max(bar - 1, 0.5), 1),
                    "h": round(max(h, 0.5), 1),
                    "fill": COMMAND_COLOURS[kind],
                    "title": f"{start:%H:%M:%S}: {n} {kind} ({n / SLOT.seconds:g}/s)",
                }
            )
    last = by_index.get(slots - 1, {})
    total = {kind: sum(k.get(kind, 0) for k in by_index.values()) for kind in command_rate.KINDS}
    sent = sum(total.values())

    def per_s(n: int) -> str:
        return f"{n / SLOT.seconds:g}"

    return {
        "available": True,
        "rects": rects,
        "rate_now": per_s(sum(last.values())),
        "errors_now": per_s(last.get("error", 0)),
        "refused_now": per_s(last.get("refused", 0)),
        "total": sent,
        "error_ratio": f"{100 * total['error'] / sent:.1f}" if sent else "0",
        "refused_ratio": f"{100 * total['refused'] / sent:.1f}" if sent else "0",
        "legend": [(kind, COMMAND_COLOURS[kind], total[kind]) for kind in command_rate.KINDS],
        "tallest_per_s": per_s(tallest),
        "width": COMMAND_WIDTH,
        "height": COMMAND_HEIGHT,
        "axis_y": COMMAND_HEIGHT - BOTTOM,
    }


def projection_health() -> list[dict[str, Any]]:
    return [
        {k: p.get(k) for k in ("name", "kind", "status", "lag", "lag_seconds", "rebuild", "error")}
        for p in status.overview()
    ]


def system_health() -> dict[str, Any]:
    state = health()
    return {"ok": state.ok, "database": state.database, "broker": state.broker, "workers": state.workers}


def _part(name: str) -> dict[str, Any]:
    if name == "stats":
        return {"totals": cached("dashboard.totals", SHARED_FOR_S, totals)}
    if name == "chart":
        return {"chart": chart(timezone.now())}
    if name == "commands":
        return {"commands": command_chart(timezone.now())}
    if name == "projections":
        return {"projections": cached("dashboard.projections", SHARED_FOR_S, projection_health)}
    return {"health": system_health()}


@access.viewer
def dashboard(request: HttpRequest) -> HttpResponse:
    part = request.GET.get("part")
    if request.htmx and part in PARTS:
        return render(request, f"console/dashboard.html#{part}", _part(part))
    context: dict[str, Any] = {"title": "Dashboard", "live_topics": "events,projections"}
    for name in PARTS:
        context.update(_part(name))
    return render(request, "console/dashboard.html", context)


urlpatterns = [path("", dashboard, name="dashboard")]
