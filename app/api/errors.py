"""One error body for every failure: {"error": code, "detail": text[, "fields": {...}]}.

Exceptions from the layers below are mapped here, in one place; views raise or let
through, never build error responses themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError

from app.ledger import commands

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers with `status` and the contract's body."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.extra = status, error, detail, extra


def body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, **extra}


# Every error code the API answers with, and its status.
ERROR_CODES: dict[str, int] = {
    "malformed_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_rebuildable": 409,
    "subscription_exists": 409,
    "lease_lost": 409,
    "stream_gone": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "rate_limited": 429,
    "too_many_streams": 503,
    **commands.CODES,
    "internal_error": 500,
}


def install(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, status: int, payload: dict[str, Any], **headers: str) -> HttpResponse:
        response = api.create_response(request, payload, status=status)
        for name, value in headers.items():
            response[name.replace("_", "-")] = value
        return response

    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        headers = exc.extra.pop("headers", {})
        return respond(request, exc.status, body(exc.error, exc.detail, **exc.extra), **headers)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(
            request, 401, body("unauthorized", "a valid bearer token is required"), WWW_Authenticate="Bearer"
        )

    @api.exception_handler(AuthorizationError)
    def forbidden(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(request, 403, body("forbidden", str(exc) or "your role does not allow this"))

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return respond(
            request,
            422,
            body("validation_error", "some fields are invalid", fields=commands.validation_fields(list(exc.errors))),
        )

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:
            return respond(request, 400, body("malformed_json", "the request body is not valid JSON"))
        return respond(request, exc.status_code, body(f"http_{exc.status_code}", str(exc)))

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(request, 413, body("payload_too_large", "the request body is over the size limit"))

    def refused(request: HttpRequest, exc: Exception) -> HttpResponse:
        answer = commands.refusal(exc)
        assert answer is not None  # registered for the table's own exception types only
        extra = {**answer.extra, **({"fields": answer.fields} if answer.fields is not None else {})}
        return respond(request, answer.status, body(answer.code, answer.detail, **extra), **answer.headers)

    for kind in commands.REFUSABLE:
        api.exception_handler(kind)(refused)

    @api.exception_handler(Http404)
    def http404(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(request, 404, body("not_found", str(exc) or "not found"))

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return respond(request, 500, body("internal_error", "something went wrong on our side"))
