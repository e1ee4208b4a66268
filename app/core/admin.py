"""Django's admin, read-only: for admins (the role; `is_staff` follows it, see role_set), a view of
the users, their API tokens and where the projections stand (app/ledger/admin.py adds the ledger's
read models). Nothing is added, changed or deleted here, by superusers neither: users are managed
on the console's Users page, and the log and everything folded from it change by commands only.
The admin's login is the console's throttled one (app/urls.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest

from app.core.models import ApiToken, Role, has_role, role_of
from projections.models import BucketCheckpoint, ProjectionState, Rebuild, Skip


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown to admins only, and only to look at."""

    list_per_page = 50
    show_full_result_count = False  # one count per page is enough on a big table

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, Role.ADMIN)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, Role.ADMIN)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


User = get_user_model()
for model in (User, Group):  # Django's own, editable registrations
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    """Users and their roles; no password hashes."""

    list_display = ("username", "role", "is_active", "is_superuser", "last_login", "date_joined")
    list_filter = ("is_active", "profile__role")
    list_select_related = ("profile",)
    search_fields = ("username",)
    fields = ("username", "role", "is_active", "is_staff", "is_superuser", "last_login", "date_joined")
    readonly_fields = ("role",)
    ordering = ("username",)

    @admin.display(description="role")
    def role(self, user: Any) -> str | None:
        return role_of(user, loaded=True)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens by their first characters (the digest is not shown: nothing to look at)."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    fields = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    ordering = ("-created_at",)


@admin.register(ProjectionState)
class ProjectionStateAdmin(ReadOnlyAdmin):
    list_display = ("name", "version", "generation", "paused", "created_at")


@admin.register(BucketCheckpoint)
class BucketCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("projection", "bucket", "position", "failed", "error_position", "updated_at")
    list_filter = ("projection", "failed")
    ordering = ("projection", "bucket")


@admin.register(Rebuild)
class RebuildAdmin(ReadOnlyAdmin):
    list_display = ("projection", "version", "state", "reason", "done", "total", "started_at", "finished_at")
    list_filter = ("state",)
    ordering = ("-started_at",)


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin):
    list_display = ("projection", "event_id", "position", "skipped_by", "skipped_at", "reason")
    ordering = ("-skipped_at",)
