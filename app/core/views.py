"""The login (the console's and the admin's one), and /healthz.

The login is Django's LoginView run in the worker pool (app/core/threads.py): hashing a password
takes a fraction of a second of CPU, and must not hold a thread or a database connection that
other requests need. Throttling is in app/core/throttle.py (django-axes): it refuses a locked-out
login before the password is hashed, and AxesMiddleware turns the refusal into `locked_out` (429).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import reverse

from app.core.health import health
from app.core.threads import in_thread
from app.core.unavailable import retry_after

LOCKED_OUT = "Too many failed attempts. Wait a few minutes, then try again."


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and at least one worker answer; 503 naming what failed,
    with Retry-After."""
    state = await in_thread(health)()
    body: dict[str, Any] = {
        "status": "ok" if state.ok else "unavailable",
        "database": "ok" if state.database is None else "unavailable",
        "broker": "ok" if state.broker is None else "unavailable",
        "workers": len(state.workers),
    }
    if state.ok:
        return JsonResponse(body)
    body["failing"] = state.failing
    response = JsonResponse(body, status=503)
    response["Retry-After"] = retry_after()  # a probe, or a client, is told when to look again
    return response


class LoginPage(LoginView):
    """Django's login (its `username` and `password` fields), on the console's page."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True


login_page = LoginPage.as_view()


def _login(request: HttpRequest) -> HttpResponseBase:
    response = login_page(request)
    if isinstance(response, TemplateResponse):
        response.render()  # here in the pool too, not afterwards on the request's thread
    return response


async def login(request: HttpRequest) -> HttpResponseBase:
    return await in_thread(_login)(request)


def locked_out(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """The login page, 429, for a login refused by the throttle (settings.AXES_LOCKOUT_CALLABLE).
    Axes passes (request, response, credentials), or in async mode (request, credentials): neither
    is needed. The form is not bound: checking it would try the password again."""
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    next_page = request.POST.get("next") or request.GET.get("next", "")
    context = {"form": form, "next": next_page, "locked_out": LOCKED_OUT}
    return render(request, "registration/login.html", context, status=429)


def admin_login(request: HttpRequest) -> HttpResponse:
    """/admin/login/: Django's admin takes no password of its own. Everyone logs in through the
    console's throttled login and comes back; a logged-in user whom the admin refused (not an
    admin) is told so, instead of being sent round in circles."""
    if request.user.is_authenticated:
        return render(request, "registration/admin_forbidden.html", status=403)
    return redirect_to_login(request.GET.get("next") or reverse("admin:index"))
