"""Console: Users and API tokens (admins only). Who may do what, their roles, their bearer
tokens for the REST API. A new token is shown once, in the answer to the form that made it
(never stored: only its digest is), and never again."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from app.console import access
from app.console.forms import CreateUserForm, RoleForm, TokenForm
from app.core.models import ApiToken, Role, role_of, role_set

TOKENS_SHOWN = 200


def _users_page(
    request: HttpRequest,
    *,
    create_form: CreateUserForm | None = None,
    token_form: TokenForm | None = None,
    issued: dict[str, Any] | None = None,
) -> HttpResponse:
    users = list(get_user_model().objects.select_related("profile").order_by("username"))
    tokens = list(
        ApiToken.objects.select_related("user").order_by(F("revoked_at").asc(nulls_first=True), "-created_at")[
            : TOKENS_SHOWN + 1
        ]
    )
    active = dict(ApiToken.objects.active().values("user").annotate(n=Count("id")).values_list("user", "n"))
    rows = [
        {"user": u, "role": role_of(u, loaded=True), "tokens": active.get(u.pk, 0), "fixed": _fixed(request, u)}
        for u in users
    ]
    context = {
        "title": "Users",
        "rows": rows,
        "roles": Role.choices,
        "tokens": tokens[:TOKENS_SHOWN],
        "more_tokens": len(tokens) > TOKENS_SHOWN,
        "create_form": create_form or CreateUserForm(auto_id="user-%s"),
        "token_form": token_form or TokenForm(auto_id="token-%s"),
        "issued": issued,
    }
    return render(request, "console/users.html", context)


def _fixed(request: HttpRequest, user: Any) -> str:
    """Why this user's role cannot be changed here ("" when it can)."""
    if user.is_superuser:
        return "a superuser is always an admin"
    return "your own role" if user == request.user else ""


@access.admin
def users(request: HttpRequest) -> HttpResponse:
    return _users_page(request)


@require_POST
@access.admin
def user_create(request: HttpRequest) -> HttpResponse:
    form = CreateUserForm(request.POST, auto_id="user-%s")
    if not form.is_valid():
        return _users_page(request, create_form=form)
    with transaction.atomic():
        user = get_user_model().objects.create_user(
            username=form.cleaned_data["username"], password=form.cleaned_data["password"]
        )
        role_set(user, form.cleaned_data["role"])
    messages.success(request, f"Created {user.username} ({form.cleaned_data['role']}); they can log in now.")
    return redirect("console:users")


@require_POST
@access.admin
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles: viewer, operator, admin.")
    elif reason := _fixed(request, user):
        messages.error(request, f"The role of {user.username} cannot be changed here: {reason}.")
    else:
        role_set(user, form.cleaned_data["role"])
        messages.success(request, f"{user.username} is now {form.cleaned_data['role']}.")
    return redirect("console:users")


@never_cache
@require_POST
@access.admin
def token_create(request: HttpRequest) -> HttpResponse:
    """The token is in this answer only (not cached, not stored): the page says to copy it now."""
    form = TokenForm(request.POST, auto_id="token-%s")
    if not form.is_valid():
        return _users_page(request, token_form=form)
    row, token = ApiToken.issue(form.cleaned_data["user"], name=form.cleaned_data["name"])
    return _users_page(request, issued={"row": row, "token": token})


@require_POST
@access.admin
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    row = get_object_or_404(ApiToken, pk=token_id)
    revoked = ApiToken.objects.filter(pk=row.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    name = f"{row.prefix}… ({row.user.username}{', ' + row.name if row.name else ''})"
    if revoked:
        messages.success(request, f"Revoked {name}: it no longer opens the API.")
    else:
        messages.info(request, f"{name} was revoked already.")
    return redirect("console:users")


urlpatterns = [
    path("users/", users, name="users"),
    path("users/create/", user_create, name="user_create"),
    path("users/<int:user_id>/role/", user_role, name="user_role"),
    path("users/tokens/create/", token_create, name="token_create"),
    path("users/tokens/<int:token_id>/revoke/", token_revoke, name="token_revoke"),
]
