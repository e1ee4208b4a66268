"""Console: Projections. Where every projection and process manager stands (status, position,
lag, its 64 buckets), a parked event's traceback, who holds the read horizon; and for operators
pause/resume, retry/skip and blue/green rebuilds with a live progress bar.

One template, two partials fetched by htmx by their target's id: "projections" (the table,
re-fetched on the "projections" and "events" hints, and every second while a rebuild runs, so
the progress bar moves even where no hint arrives) and "horizon" (polled: a held horizon sends
no hints, since nothing gets applied). Actions are POST forms; htmx swaps the table in place,
plain forms redirect back (PRG).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from app.console import access
from app.integration.subscriptions import subscription_list
from projections import rebuild, status
from projections.base import projection_registry
from projections.horizon import horizon
from projections.processes import process_registry

TEMPLATE = "console/projections.html"
HORIZON_MIN_AGE_S = 1.0  # command transactions hold the horizon for milliseconds; this is not news
SHOW_FINISHED_REBUILD_S = 120  # a finished rebuild keeps its (full) bar this long, then a line


def _rebuild_view(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """A rebuild's progress with its times parsed and its bar's width, for the template."""
    if progress is None:
        return None
    started, finished = parse_datetime(progress["started_at"]), None
    if progress["finished_at"]:
        finished = parse_datetime(progress["finished_at"])
    total, done = progress["total"], progress["done"]
    percent = 100 if progress["state"] == "done" else (min(99, done * 100 // total) if total else 0)
    took = (finished - started).total_seconds() if finished and started else None
    return {**progress, "started_at": started, "finished_at": finished, "percent": percent, "took_s": took}


def _items(now: datetime) -> list[dict[str, Any]]:
    items = status.overview()
    recent = now - timedelta(seconds=SHOW_FINISHED_REBUILD_S)
    for item in items:
        item["is_process"] = item.get("kind") == "process"
        item["status_label"] = item["status"].replace("_", " ")
        item["rebuild"] = _rebuild_view(item.get("rebuild"))
        last = item["last_rebuild"] = _rebuild_view(item.get("last_rebuild"))
        item["just_rebuilt"] = bool(last and last["finished_at"] and last["finished_at"] >= recent)
        item["lagging_buckets"] = sum(1 for b in item["buckets"] if b["lag"] and not b["failed"])
    return items


def _table_context() -> dict[str, Any]:
    items = _items(timezone.now())
    return {"items": items, "rebuilding": any(i["rebuild"] for i in items)}


@access.viewer
def projection_list(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "horizon":
        return render(request, f"{TEMPLATE}#horizon", {"horizon": horizon(HORIZON_MIN_AGE_S)})
    context = _table_context()
    if request.htmx and request.htmx.target == "projections":
        return render(request, f"{TEMPLATE}#projections", context)
    return render(
        request,
        TEMPLATE,
        {
            **context,
            "horizon": horizon(HORIZON_MIN_AGE_S),
            "subscriptions": subscription_list(),
            "title": "Projections",
            "live_topics": "projections,events",
        },
    )


def _known(name: str) -> None:
    if name not in projection_registry and name not in process_registry:
        raise Http404(f"no projection {name!r}")


def _pause(request: HttpRequest, name: str) -> str:
    status.set_paused(name, True)
    return f"{name} is paused: it applies nothing until it is resumed."


def _resume(request: HttpRequest, name: str) -> str:
    status.set_paused(name, False)
    return f"{name} resumed."


def _retry(request: HttpRequest, name: str) -> str:
    count = status.retry(name)
    return f"{name}: {count} parked bucket(s) will try their event again." if count else f"{name} has nothing parked."


def _skip(request: HttpRequest, name: str) -> str:
    skipped = status.skip(name, user=request.user, reason="console")
    if not skipped:
        return f"{name} has nothing parked."
    return f"{name}: skipped {len(skipped)} parked event(s); rebuilds and verification skip them too."


def _rebuild(request: HttpRequest, name: str) -> str:
    already = rebuild.active(name)
    job = rebuild.start(name, reason="console", user=request.user)
    if already is not None:
        return f"A rebuild of {name} is already running ({job.done} of {job.total} events)."
    return f"Rebuilding {name} (version {job.version}) from position zero; the current tables keep serving."


ACTIONS: dict[str, Callable[[HttpRequest, str], str]] = {
    "pause": _pause,
    "resume": _resume,
    "retry": _retry,
    "skip": _skip,
    "rebuild": _rebuild,
}


@require_POST
@access.operator
def projection_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Pause, resume, retry, skip or rebuild; then the table again (htmx) or the page (PRG)."""
    _known(name)
    act = ACTIONS.get(action)
    if act is None:
        raise Http404(f"no action {action!r}")
    try:
        notice, level = act(request, name), "success"
    except rebuild.NotRebuildable:
        notice, level = f"{name} is a process manager: it is never rebuilt (its commands would run again).", "error"
    if request.htmx:
        return render(request, f"{TEMPLATE}#projections", {**_table_context(), "notice": notice, "level": level})
    messages.add_message(request, messages.ERROR if level == "error" else messages.SUCCESS, notice)
    return redirect("console:projections")


urlpatterns = [
    path("projections/", projection_list, name="projections"),
    path("projections/<str:name>/<str:action>/", projection_action, name="projection_action"),
]
