"""Checks every API request body before the framework parses it: size (413) and type (415)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

BODY_METHODS = {"POST", "PUT", "PATCH"}


def _reject(request: HttpRequest) -> HttpResponse | None:
    if not request.path.startswith("/api/") or request.method not in BODY_METHODS:
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.API_MAX_BODY_BYTES:
        return JsonResponse(
            {"error": "payload_too_large", "detail": f"the body may have at most {settings.API_MAX_BODY_BYTES} bytes"},
            status=413,
        )
    if length and request.content_type != "application/json":
        return JsonResponse(
            {"error": "unsupported_media_type", "detail": "send the body as application/json"}, status=415
        )
    return None


class ApiBodyMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        return _reject(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return _reject(request) or await self.get_response(request)
