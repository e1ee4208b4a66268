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

from app.ledger.domain.errors import LedgerError
from app.ledger.handlers import NotFound
from eventstore.errors import AggregateNotFound, ConcurrencyError, InvalidEventData, UnknownEventType

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API answers with `status` and the contract's body."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.extra = status, error, detail, extra


def body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, **extra}


def _fields(errors: list[dict[str, Any]]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "payload", "query", "path")]
        fields.setdefault(".".join(loc) or "(body)", []).append(e.get("msg", "invalid"))
    return fields


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
            request, 422, body("validation_error", "some fields are invalid", fields=_fields(list(exc.errors)))
        )

    @api.exception_handler(InvalidEventData)
    def invalid_event(request: HttpRequest, exc: InvalidEventData) -> HttpResponse:
        return respond(request, 422, body("validation_error", str(exc), fields=_fields(exc.errors)))

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if exc.status_code == 400:
            return respond(request, 400, body("malformed_json", "the request body is not valid JSON"))
        return respond(request, exc.status_code, body(f"http_{exc.status_code}", str(exc)))

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(request, 413, body("payload_too_large", "the request body is over the size limit"))

    @api.exception_handler(LedgerError)
    def business_rule(request: HttpRequest, exc: LedgerError) -> HttpResponse:
        return respond(request, 422, body(exc.code, exc.detail))

    @api.exception_handler(NotFound)
    def not_found(request: HttpRequest, exc: NotFound) -> HttpResponse:
        return respond(request, 404, body("not_found", str(exc)))

    @api.exception_handler(AggregateNotFound)
    def no_aggregate(request: HttpRequest, exc: AggregateNotFound) -> HttpResponse:
        return respond(request, 404, body("not_found", str(exc)))

    @api.exception_handler(UnknownEventType)
    def unknown_type(request: HttpRequest, exc: UnknownEventType) -> HttpResponse:
        return respond(request, 404, body("not_found", str(exc)))

    @api.exception_handler(Http404)
    def http404(request: HttpRequest, exc: Exception) -> HttpResponse:
        return respond(request, 404, body("not_found", str(exc) or "not found"))

    @api.exception_handler(ConcurrencyError)
    def conflict(request: HttpRequest, exc: ConcurrencyError) -> HttpResponse:
        return respond(
            request,
            409,
            body("concurrency_conflict", f"the stream is at version {exc.actual}", version=exc.actual),
            ETag=f'"{exc.actual}"',
        )

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return respond(request, 500, body("internal_error", "something went wrong on our side"))
