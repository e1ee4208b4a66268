"""Unknown query parameters are refused (422 naming each), not silently ignored: a typo such as
`?stauts=frozen` would otherwise answer every account as if no filter had been asked for.

The parameters each operation takes are read once from the API's own OpenAPI document, so the
check follows the endpoints as they change.
"""

from __future__ import annotations

import functools
import re

from django.http import HttpRequest, HttpResponse, JsonResponse

from app.api.middleware import RefusingMiddleware

Operations = list[tuple[re.Pattern[str], str, frozenset[str]]]


@functools.cache
def operations() -> Operations:
    """(path pattern, method, the query parameters it takes) for every operation of the API."""
    from app.api.api import api  # the API's document, made once the API (and this module) loaded

    found: Operations = []
    for path, ops in api.get_openapi_schema()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")  # paths are plain words
        for method, op in ops.items():
            names = frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
            found.append((pattern, method.upper(), names))
    return found


def unknown(request: HttpRequest) -> list[str]:
    """The query parameters of this request that its operation does not take (none if the path is
    no operation: that is a 404 or a 405 of its own)."""
    if not request.GET:
        return []
    for pattern, method, names in operations():
        if method == request.method and pattern.match(request.path):
            return sorted(set(request.GET) - names)
    return []


def refuse(request: HttpRequest) -> HttpResponse | None:
    if not request.path.startswith("/api/"):
        return None
    extra = unknown(request)
    if not extra:
        return None
    body = {
        "error": "validation_error",
        "detail": "unknown query parameters: " + ", ".join(repr(n)[:80] for n in extra[:10]),
        "fields": {name[:200]: ["not a query parameter of this operation"] for name in extra[:10]},
    }
    return JsonResponse(body, status=422)


class UnknownQueryParameters(RefusingMiddleware):
    def refuse(self, request: HttpRequest) -> HttpResponse | None:
        return refuse(request)
