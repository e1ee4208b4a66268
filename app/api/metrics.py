"""GET /metrics: Prometheus' text format (app/core/metrics.py), for an API bearer token of the
viewer role or above, or for anyone where the operator set METRICS_ALLOW_ANONYMOUS. Outside /api/
(Prometheus' custom), so not under the API's rate limit, and exempt from the HTTPS redirect in
production like /healthz; errors have the contract's body all the same."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from app.api.auth import BearerToken
from app.api.errors import body
from app.core import metrics
from app.core.models import outranks
from app.core.threads import in_thread

NEEDED_ROLE = "viewer"


def _error(status: int, error: str, detail: str, **headers: Any) -> JsonResponse:
    response = JsonResponse(body(error, detail), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


@csrf_exempt  # a scraper has no session, and no method here changes anything
async def scrape(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", "only GET reads the metrics", Allow="GET, HEAD")
    if not settings.METRICS_ALLOW_ANONYMOUS:
        caller = await BearerToken()(request)
        if caller is None:
            return _error(401, "unauthorized", "a valid bearer token is required", **{"WWW-Authenticate": "Bearer"})
        if not outranks(caller.role, NEEDED_ROLE):
            return _error(403, "forbidden", f"this needs the {NEEDED_ROLE} role; yours is {caller.role}")
    payload, content_type = await in_thread(metrics.exposition)()
    return HttpResponse(payload, content_type=content_type)
