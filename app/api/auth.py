"""Bearer tokens and roles for the REST API."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthorizationError
from ninja.security.http import HttpBearer

from app.core.models import ApiToken, digest, outranks, role_of
from app.core.threads import in_thread


class Caller:
    """The authenticated user and role behind a request (`request.auth`)."""

    def __init__(self, user: Any, role: str) -> None:
        self.user, self.role = user, role

    def require(self, needed: str) -> None:
        if not outranks(self.role, needed):
            raise AuthorizationError(message=f"this needs the {needed} role; yours is {self.role}")


def caller_for_token(token: str) -> Caller | None:
    row = (
        ApiToken.objects.active()
        .select_related("user", "user__profile")
        .filter(digest=digest(token), user__is_active=True)
        .first()
    )
    if row is None:
        return None
    user = row.user
    role = role_of(user, loaded=True)
    assert role is not None  # an active user is authenticated
    if row.last_used_at is None or (timezone.now() - row.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return Caller(user, role)


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`, looked up off the event loop in a worker thread."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> Caller | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await in_thread(caller_for_token)(token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        return caller_for_token(token)
