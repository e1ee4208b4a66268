"""Django's admin at /admin/ (issue 12, point 5): behind the console's one throttled login, and for
admins a read-only view of the read models and users (no add, change or delete, for superusers
neither: the log and what is folded from it are changed by commands only)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from app.core.models import ApiToken, Role, role_set
from app.ledger.models import AccountSummary
from tests.integration.console.clients import console_client

PASSWORD = "right-password-123"


def staff_user(role: str = Role.ADMIN) -> str:
    name = f"ada{secrets.token_hex(4)}"
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    role_set(user, role)
    return name


@pytest.fixture
def account(transactional_db) -> AccountSummary:
    now = datetime.now(UTC)
    return AccountSummary.objects.create(
        account_id=uuid4(), owner="Ann Admin", currency="EUR", version=1, opened_at=now, updated_at=now
    )


def test_the_admin_login_is_the_consoles_throttled_one(transactional_db, settings):
    settings.LOGIN_MAX_FAILURES = 3
    name = staff_user()
    client = Client(REMOTE_ADDR=f"10.77.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}")
    anonymous = client.get("/admin/")
    assert anonymous.status_code == 302
    page = client.get(anonymous.url)
    assert page.status_code == 302 and page.url.startswith("/login/?next=/admin/")
    # the admin's own form takes no password
    direct = client.post("/admin/login/", {"username": name, "password": PASSWORD, "next": "/admin/"})
    assert direct.status_code == 302 and direct.url.startswith("/login/")
    assert "_auth_user_id" not in client.session
    statuses = [client.post("/login/", {"username": name, "password": "wrong"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/login/", {"username": name, "password": PASSWORD, "next": "/admin/"}).status_code == 429


def test_an_admin_logs_in_once_for_the_console_and_the_admin(transactional_db):
    name = staff_user()
    client = Client()
    answer = client.post("/login/?next=/admin/", {"username": name, "password": PASSWORD, "next": "/admin/"})
    assert answer.status_code == 302 and answer.url == "/admin/"
    index = client.get("/admin/").content.decode()
    for model in ("ledger/accountsummary", "ledger/entry", "ledger/transfersummary", "auth/user", "core/apitoken"):
        assert f'href="/admin/{model}/"' in index, model
    assert "/admin/auth/group/" not in index


@pytest.mark.parametrize("superuser", [False, True])
def test_everything_in_the_admin_is_read_only(account, superuser):
    client = console_client(f"ro{secrets.token_hex(3)}", Role.ADMIN)
    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    user.is_staff, user.is_superuser = True, superuser
    user.save()
    token = ApiToken.issue(user)[0]
    pages = {
        "ledger/accountsummary": account.pk,
        "auth/user": user.pk,
        "core/apitoken": token.pk,
    }
    for model, pk in pages.items():
        listing = client.get(f"/admin/{model}/")
        assert listing.status_code == 200, model
        detail = client.get(f"/admin/{model}/{pk}/change/")
        assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode(), model
        assert client.post(f"/admin/{model}/{pk}/change/", {}).status_code == 403, model
        assert client.get(f"/admin/{model}/add/").status_code == 403, model
        assert client.post(f"/admin/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403, model
        assert client.post(f"/admin/{model}/", {"action": "delete_selected", "_selected_action": [pk]}).status_code in (
            200,
            302,
        )
    assert AccountSummary.objects.filter(pk=account.pk).exists()
    assert get_user_model().objects.filter(pk=user.pk).exists()
    assert "Ann Admin" in client.get("/admin/ledger/accountsummary/").content.decode()
    assert "pbkdf2" not in client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
def test_viewers_and_operators_get_no_admin(transactional_db, role):
    client = console_client(f"no{secrets.token_hex(3)}", role)
    answer = client.get("/admin/", follow=True)
    assert answer.status_code == 403
    assert client.get("/admin/ledger/accountsummary/", follow=True).status_code == 403
