"""Who may see and do what in the console: the REST API's roles (app.core.models), checked on the
server for every view, and handed to templates so that controls a role may not use are not shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from app.core.models import Role, has_role, role_of
from app.core.threads import in_thread

View = Callable[..., HttpResponse] | Callable[..., Awaitable[HttpResponse]]
AsyncView = Callable[..., Awaitable[HttpResponse]]


def console(request: HttpRequest) -> dict[str, Any]:
    """Context processor: the user's role and what it allows."""
    role = role_of(getattr(request, "user", None))
    return {
        "role": role,
        "can_operate": role in (Role.OPERATOR, Role.ADMIN),
        "is_admin": role == Role.ADMIN,
    }


def refusal(request: HttpRequest, role: str) -> HttpResponse | None:
    """What a request gets instead of the view, if anything: anonymous users the login page (for
    htmx as a whole-page redirect: never the login form swapped into a fragment), users below
    `role` a 403 page (never the action)."""
    if not request.user.is_authenticated:
        if request.htmx:  # a fragment's poll after the session ended: the whole page goes to log in
            page = request.htmx.current_url_abs_path or request.get_full_path()
            return HttpResponseClientRedirect(f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': page})}")
        return redirect_to_login(request.get_full_path())
    if not has_role(request.user, role):
        return render(request, "console/forbidden.html", {"needed": role}, status=403)
    return None


def requires(role: str) -> Callable[[View], AsyncView]:
    """A console view for logged-in users with at least `role` (see `refusal`), served without
    holding any thread but a pool thread (app/core/threads.py): a plain view runs in the pool
    whole, with the role check; an async view (one that waits) gets the check run there, and
    runs its own blocking parts there too."""

    def decorate(view: View) -> AsyncView:
        if iscoroutinefunction(view):

            @wraps(view)
            async def waits(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                refused = await in_thread(refusal)(request, role)
                return refused if refused is not None else await view(request, *args, **kwargs)

            return waits

        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refused = refusal(request, role)
            return refused if refused is not None else view(request, *args, **kwargs)

        @wraps(view)
        async def runs(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return await in_thread(checked)(request, *args, **kwargs)

        return runs

    return decorate


viewer = requires(Role.VIEWER)
operator = requires(Role.OPERATOR)
admin = requires(Role.ADMIN)
