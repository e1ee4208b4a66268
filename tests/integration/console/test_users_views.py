"""Users and API tokens in the console: admins only, roles changed (never one's own), tokens
shown once and revoked."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from app.api.auth import caller_for_token
from app.core.models import ApiToken, Profile, role_of
from tests.integration.console.clients import console_client

PAGE = reverse("console:users")


@pytest.fixture
def admin(transactional_db) -> Client:
    return console_client("ada", "admin")


def user(username: str, role: str = "viewer"):
    found, _ = get_user_model().objects.get_or_create(username=username)
    Profile.objects.update_or_create(user=found, defaults={"role": role})
    return found


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_or_change_users_and_tokens(transactional_db, role):
    client = console_client(f"not-admin-{role}", role)
    target = user("tess")
    token_row, _ = ApiToken.issue(target)
    assert client.get(PAGE).status_code == 403
    posts = {
        reverse("console:user_create"): {"username": "mallory", "role": "admin", "password": "a-long-password-1"},
        reverse("console:user_role", args=[target.pk]): {"role": "admin"},
        reverse("console:token_create"): {"user": "tess", "name": "stolen"},
        reverse("console:token_revoke", args=[token_row.pk]): {},
    }
    for url, data in posts.items():
        response = client.post(url, data)
        assert response.status_code == 403 and b"ef_" not in response.content, url
    assert not get_user_model().objects.filter(username="mallory").exists()
    assert role_of(target) == "viewer" and ApiToken.objects.count() == 1
    assert ApiToken.objects.get().revoked_at is None
    assert (
        "Users" not in re.findall(r"<nav.*?</nav>", client.get(reverse("console:accounts")).content.decode(), re.S)[0]
    )


def test_an_admin_lists_users_with_roles_and_tokens(admin):
    user("vic", "viewer")
    row, _ = ApiToken.issue(user("olga", "operator"), name="nightly export")
    html = admin.get(PAGE).content.decode()
    assert re.search(r'data-user="olga".*?<option value="operator" selected>', html, re.S)
    assert re.search(r'data-user="ada".*?role-admin">admin</span> <span class="muted">\(your own role\)', html, re.S)
    assert f"{row.prefix}…" in html and "nightly export" in html and "never" in html


def test_an_admin_creates_a_user_who_can_log_in(admin):
    response = admin.post(
        reverse("console:user_create"), {"username": "nora", "role": "operator", "password": "correct horse battery"}
    )
    assert response.status_code == 302
    assert role_of(get_user_model().objects.get(username="nora")) == "operator"
    assert Client().login(username="nora", password="correct horse battery")
    assert "Created nora (operator)" in admin.get(PAGE).content.decode()
    again = admin.post(reverse("console:user_create"), {"username": "NORA", "role": "viewer", "password": "short"})
    html = again.content.decode()
    assert again.status_code == 200 and "a user with this name exists already" in html
    assert (
        "This password is too short" in html
        and 'value="NORA"' in html
        and "short" not in re.findall(r'<input type="password"[^>]*>', html)[0]
    )


def test_roles_change_but_never_ones_own(admin):
    vic = user("vic", "viewer")
    assert admin.post(reverse("console:user_role", args=[vic.pk]), {"role": "operator"}).status_code == 302
    assert role_of(vic) == "operator"
    admin.post(reverse("console:user_role", args=[vic.pk]), {"role": "admin"})
    vic.refresh_from_db()
    assert role_of(vic) == "admin" and vic.is_staff  # Django's admin site follows the role
    admin.post(reverse("console:user_role", args=[vic.pk]), {"role": "operator"})
    vic.refresh_from_db()
    assert role_of(vic) == "operator" and not vic.is_staff
    me = get_user_model().objects.get(username="ada")
    html = admin.post(reverse("console:user_role", args=[me.pk]), {"role": "viewer"}, follow=True).content.decode()
    assert "cannot be changed here: your own role" in html and role_of(me) == "admin"
    root = get_user_model().objects.create_superuser("root", password="x-long-password")
    admin.post(reverse("console:user_role", args=[root.pk]), {"role": "viewer"})
    assert role_of(root) == "admin"
    assert (
        "Choose one of the roles"
        in admin.post(reverse("console:user_role", args=[vic.pk]), {"role": "god"}, follow=True).content.decode()
    )
    assert admin.post(reverse("console:user_role", args=[999_999]), {"role": "viewer"}).status_code == 404


def test_a_token_is_shown_once_and_works_until_revoked(admin):
    user("olga", "operator")
    response = admin.post(reverse("console:token_create"), {"user": "olga", "name": "ci"})
    html = response.content.decode()
    token = re.search(r'<code class="token" id="issued-token">(ef_[\w-]+)</code>', html).group(1)
    assert "it is shown this once" in html and "no-store" in response["Cache-Control"]
    caller = caller_for_token(token)
    assert caller is not None and caller.user.username == "olga" and caller.role == "operator"
    row = ApiToken.objects.get(name="ci")
    assert token not in admin.get(PAGE).content.decode() and row.prefix == token[:8]

    assert admin.post(reverse("console:token_revoke", args=[row.pk])).status_code == 302
    assert caller_for_token(token) is None
    html = admin.get(PAGE).content.decode()
    assert "it no longer opens the API" in html and re.search(rf'data-token="{row.pk}".*?revoked', html, re.S)
    again = admin.post(reverse("console:token_revoke", args=[row.pk]), follow=True).content.decode()
    assert "was revoked already" in again


def test_a_token_form_needs_a_known_user(admin):
    response = admin.post(reverse("console:token_create"), {"user": "nobody", "name": "x"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_csrf_is_enforced_on_the_users_forms(transactional_db):
    admin = console_client("ada", "admin", enforce_csrf_checks=True)
    user("olga", "operator")
    assert admin.post(reverse("console:token_create"), {"user": "olga"}).status_code == 403
    assert not ApiToken.objects.exists()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', admin.get(PAGE).content.decode()).group(1)
    assert (
        admin.post(reverse("console:token_create"), {"user": "olga", "csrfmiddlewaretoken": token}).status_code == 200
    )
    assert ApiToken.objects.count() == 1
