"""Django's four password validators are on (similarity, at least 12 characters, common,
numeric), and every place that sets a console password applies them with a clear message."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.management import CommandError, call_command
from django.urls import reverse

from app.core.models import ApiToken
from tests.integration.console.clients import console_client

WEAK = {
    "short-pw-1": "This password is too short. It must contain at least 12 characters.",
    "qwerty123456": "This password is too common.",
    "918273645546372819": "This password is entirely numeric.",
    "tina.ledger.example": "The password is too similar to the username.",
}


def test_the_four_validators_are_on():
    names = [v["NAME"].rsplit(".", 1)[1] for v in settings.AUTH_PASSWORD_VALIDATORS]
    assert names == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]


@pytest.mark.parametrize("password", list(WEAK))
def test_create_token_refuses_a_weak_password_and_changes_nothing(transactional_db, password):
    out = StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("create_token", "tina.ledger.example", "--password", password, stdout=out)
    assert WEAK[password] in str(refused.value) and password not in str(refused.value)
    assert out.getvalue() == ""  # no token printed
    assert not get_user_model().objects.filter(username="tina.ledger.example").exists()
    assert not ApiToken.objects.exists()


def test_create_token_keeps_an_existing_password_when_the_new_one_is_weak(transactional_db):
    call_command("create_token", "tina", "--password", "a-long-password-1", stdout=StringIO())
    with pytest.raises(CommandError, match="too short"):
        call_command("create_token", "tina", "--role", "admin", "--password", "short", stdout=StringIO())
    user = get_user_model().objects.get(username="tina")
    assert user.check_password("a-long-password-1") and ApiToken.objects.filter(user=user).count() == 1


def test_the_console_user_form_refuses_weak_passwords(transactional_db):
    admin = console_client("ada", "admin")
    for password, message in WEAK.items():
        form = {"username": "tina.ledger.example", "role": "viewer", "password": password}
        page = admin.post(reverse("console:user_create"), form)
        assert page.status_code == 200 and message in page.content.decode()
    assert not get_user_model().objects.filter(username="tina.ledger.example").exists()


def test_the_generated_admin_password_passes_the_validators(transactional_db):
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    admin = get_user_model().objects.get(username="admin")
    validate_password(out.getvalue().strip(), admin)  # raises if it would not
