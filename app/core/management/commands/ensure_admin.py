"""The first login of a fresh install: `make run` calls this on every start. While no user may
administer the console, it creates `admin` (role admin) with a random password and prints only
that password, once; afterwards it prints nothing. Passwords are stored hashed: a forgotten one
is reset with `manage.py changepassword admin` (or `create_token NAME --role admin --password P`)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from app.core.models import Profile, Role, role_set

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the console user `admin` with a generated password (printed once) if nobody can administer."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists() or Profile.objects.filter(role=Role.ADMIN).exists():
            return
        if users.filter(username=USERNAME).exists():
            return  # someone made `admin` without the admin role: leave it to them
        password = secrets.token_urlsafe(12)
        role_set(users.create_user(USERNAME, password=password), Role.ADMIN)
        self.stdout.write(password)
