"""Each web process keeps a bearer token's lookup for API_TOKEN_CACHE_S seconds (app/api/auth.py):
that is the stated revocation delay. Within it a revoked token or a deactivated user's token may
still be accepted by a process that looked it up before; from the delay on it is refused."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from app.api import auth
from app.core.models import ApiToken
from tests.integration.api.conftest import Api, make_user

DELAY_S = 5.0


@pytest.fixture
def clock(settings, transactional_db, monkeypatch):
    """The cache's clock, moved by hand; the stated delay; an empty cache before and after."""
    settings.API_TOKEN_CACHE_S = DELAY_S
    now = [1_000_000.0]
    monkeypatch.setattr(auth, "clock", lambda: now[0])
    auth.forget_all()
    yield now
    auth.forget_all()


def status(api: Api) -> int:
    """401 for a refused token; 404 (no such account) once the token is accepted."""
    return api.get(f"/api/accounts/{uuid.uuid4()}").status_code


def test_a_revoked_token_is_refused_once_the_delay_has_passed(clock):
    token = make_user(f"cache-revoked-{uuid.uuid4().hex[:8]}", "viewer")
    api = Api(token)
    assert status(api) == 404  # looked up, accepted, kept
    ApiToken.objects.filter(digest=auth.digest(token)).update(revoked_at=timezone.now())
    clock[0] += DELAY_S - 0.01
    assert status(api) == 404  # within the delay: this process still has it
    clock[0] += 0.01
    assert status(api) == 401  # at the delay: looked up again, refused
    clock[0] += 60
    assert status(api) == 401  # and never kept once refused


def test_a_deactivated_users_token_is_refused_once_the_delay_has_passed(clock):
    username = f"cache-inactive-{uuid.uuid4().hex[:8]}"
    api = Api(make_user(username, "operator"))
    assert status(api) == 404
    get_user_model().objects.filter(username=username).update(is_active=False)
    clock[0] += DELAY_S
    assert status(api) == 401


def test_with_no_cache_a_revoked_token_is_refused_at_once(clock, settings):
    settings.API_TOKEN_CACHE_S = 0
    token = make_user(f"cache-off-{uuid.uuid4().hex[:8]}", "viewer")
    api = Api(token)
    assert status(api) == 404
    ApiToken.objects.filter(digest=auth.digest(token)).update(revoked_at=timezone.now())
    assert status(api) == 401


def test_an_unknown_token_is_never_kept(clock):
    """A token refused once is looked up again: issued in between, it works at once."""
    api = Api("ef_" + uuid.uuid4().hex)
    assert status(api) == 401
    assert auth.cached_caller(api.token or "") is None
