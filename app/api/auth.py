"""Bearer tokens and roles for the REST API.

A token's lookup (a query joining token, user and profile, in a worker thread) was the largest
single share of a command's time under load (docs/benchmarks.md, P2). So each web process keeps
what it found for a token for at most `API_TOKEN_CACHE_S` seconds (5 by default; 0: no cache),
and answers from memory, on the event loop, until then. That is the revocation delay: revoking a
token, deactivating its user or changing the user's role takes effect in every web process within
`API_TOKEN_CACHE_S` seconds. Only tokens found valid are kept, so a new token works at once and an
unknown one is looked up every time (and rate-limited as anonymous, app/api/ratelimit.py).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
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


CACHE_MAX = 10_000  # tokens kept per process at most; past it, the expired go, then everything
_cache: dict[str, tuple[Caller, float]] = {}  # a token's digest: its caller, until (monotonic seconds)
clock = time.monotonic  # the cache's clock (a test moves it)


def cached_caller(token: str) -> Caller | None:
    """The caller found for `token` less than API_TOKEN_CACHE_S seconds ago, if any."""
    entry = _cache.get(digest(token))
    if entry is None:
        return None
    if clock() < entry[1]:
        return entry[0]
    _cache.pop(digest(token), None)
    return None


def remember(token: str, caller: Caller) -> None:
    lifetime = settings.API_TOKEN_CACHE_S
    if lifetime <= 0:
        return
    now = clock()
    if len(_cache) >= CACHE_MAX:
        for key in [k for k, (_, until) in _cache.items() if until <= now]:
            del _cache[key]
        if len(_cache) >= CACHE_MAX:
            _cache.clear()
    _cache[digest(token)] = (caller, now + lifetime)


def forget_all() -> None:
    """Empty this process's cache (the next request of every token looks it up again)."""
    _cache.clear()


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`: from this process's short-lived cache (above), else looked
    up off the event loop in a worker thread."""

    is_async = True

    async def __call__(self, request: HttpRequest) -> Caller | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        caller = cached_caller(token)
        if caller is None:
            caller = await in_thread(caller_for_token)(token)
            if caller is not None:
                remember(token, caller)
        return caller

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        return caller_for_token(token)
