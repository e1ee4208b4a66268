"""Users' roles and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Profile(models.Model):
    """What a user may do: viewers read, operators also command, admins also manage users."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


def role_of(user: Any, *, loaded: bool = False) -> str | None:
    """A user's role: a superuser is always an admin; a user without a profile is a viewer.
    `loaded`: trust the profile loaded with the user (`select_related("profile")`), no query."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "profile", None) if loaded else Profile.objects.filter(user=user).only("role").first()
    return profile.role if profile else Role.VIEWER


def outranks(role: str | None, needed: str) -> bool:
    """Whether `role` may do what `needed` may (viewer < operator < admin)."""
    return role is not None and RANK[Role(role)] >= RANK[Role(needed)]


def has_role(user: Any, needed: str) -> bool:
    return outranks(role_of(user), needed)


def role_set(user: Any, role: str) -> None:
    """Give a user a role. The one place that does: Django's admin site flag (`is_staff`) follows
    it, so only admins (and superusers) can use the admin site."""
    Profile.objects.update_or_create(user=user, defaults={"role": Role(role)})
    staff = role == Role.ADMIN or user.is_superuser
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 digest is stored: the token is shown once, at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=8, editable=False, help_text="the first characters, to recognise it")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user: object, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; returns the row and the token itself (not stored)."""
        token = "ef_" + secrets.token_urlsafe(32)
        row = cls.objects.create(user=user, name=name, digest=digest(token), prefix=token[:8])
        return row, token


class ProcessedCommand(models.Model):
    """The result of a command sent with an Idempotency-Key (per user, kept 24 h): a retry with the
    same key and request gets it back instead of acting again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of what the key was first sent with")
    result = models.JSONField(help_text="the command's result: stream_id, version, position")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="api_processed_command_user_key")]
