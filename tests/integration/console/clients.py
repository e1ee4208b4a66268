"""Logged-in console clients (Django's test Client with a session), one per role."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from app.core.models import Profile


def console_client(username: str, role: str, **client_options: object) -> Client:
    """A client logged in as `username` with `role` (the user is created if missing)."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    client = Client(**client_options)
    client.force_login(user)
    return client


def htmx(target: str) -> dict[str, str]:
    """The headers htmx sends for a request whose target element has this id."""
    return {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": target}
