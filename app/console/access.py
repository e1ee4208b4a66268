"""Who may see and do what in the console: the REST API's roles (app.core.models), checked on the
server for every view, and handed to templates so that controls a role may not use are not shown."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from app.core.models import Role, has_role, role_of


def console(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the user's role and what it allows."""
    role = role_of(getattr(request, "user", None))
    return {
        "role": role,
        "can_operate": role in (Role.OPERATOR, Role.ADMIN),
        "is_admin": role == Role.ADMIN,
    }


def requires(role: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A console view for logged-in users with at least `role`; others get a 403 page (never the
    action), anonymous users the login page (for htmx, as a whole-page redirect: never the login
    form swapped into a fragment)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if request.htmx:  # a fragment's poll after the session ended: the whole page goes to log in
                    page = request.htmx.current_url_abs_path or request.get_full_path()
                    return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                return render(request, "console/forbidden.html", {"needed": role}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


viewer = requires(Role.VIEWER)
operator = requires(Role.OPERATOR)
admin = requires(Role.ADMIN)
