"""Console: the event catalog — every registered event type, its schema versions and JSON schema,
how many events of it the log holds, and the projections and process managers that consume it."""

from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access
from app.console.shared import shared
from eventstore.browse import Counts, LogBrowser
from eventstore.registry import registry
from projections.base import projection_registry
from projections.processes import process_registry

COUNTS_TTL_S = 30


def type_counts() -> Counts:
    """Events per type, shared by every viewer for a few seconds: on a big log even an estimate
    costs a catalog lookup, and an exact count a scan."""
    return shared("console:counts:event_type", lambda: LogBrowser().counts("event_type"), COUNTS_TTL_S)


def consumers() -> dict[str, list[dict[str, str]]]:
    """Event type -> who handles it: projections and process managers, with the handler's name."""
    found: dict[str, list[dict[str, str]]] = {}
    for kind, registered in (("projection", projection_registry.all()), ("process", process_registry.all())):
        for consumer in registered:
            for event_type, method in consumer.handlers.items():
                found.setdefault(event_type, []).append({"kind": kind, "name": consumer.name, "method": method})
    return found


@access.viewer
def catalog(request: HttpRequest) -> HttpResponse:
    counts = type_counts()
    used_by = consumers()
    types: list[dict[str, Any]] = [
        {
            "name": t.name,
            "version": t.version,
            "versions": list(range(1, t.version + 1)),
            "upcasters": sorted(t.upcasters),
            "personal_data": t.personal_data,
            "model": f"{t.model.__module__}.{t.model.__qualname__}",
            "schema": orjson.dumps(t.json_schema(), option=orjson.OPT_INDENT_2).decode(),
            "count": counts.by_key.get(t.name),
            "consumers": used_by.get(t.name, []),
        }
        for t in registry.types()
    ]
    unregistered = sorted(set(counts.by_key) - {t.name for t in registry.types()})
    context = {
        "title": "Event catalog",
        "types": types,
        "counts_exact": counts.exact,
        "unregistered": [{"name": n, "count": counts.by_key[n]} for n in unregistered],
        "ttl": COUNTS_TTL_S,
    }
    return render(request, "console/catalog.html", context)


urlpatterns = [path("catalog/", catalog, name="catalog")]
