from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

from app.core.health import health


def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and at least one worker answer; 503 naming what failed."""
    state = health()
    body: dict[str, Any] = {
        "status": "ok" if state.ok else "unavailable",
        "database": "ok" if state.database is None else "unavailable",
        "broker": "ok" if state.broker is None else "unavailable",
        "workers": len(state.workers),
    }
    if not state.ok:
        body["failing"] = state.failing
    return JsonResponse(body, status=200 if state.ok else 503)


class ThrottledLoginView(LoginView):
    """Django's login, refusing with 429 after too many failed attempts per address and username."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def _key(self) -> str:
        address = self.request.META.get("REMOTE_ADDR", "?")
        username = self.request.POST.get("username", "").strip().lower()
        return f"login-failures:{address}:{username}"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if cache.get(self._key(), 0) >= settings.LOGIN_MAX_FAILURES:
            form = self.get_form()
            form.add_error(None, "Too many failed attempts. Wait a few minutes, then try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        key = self._key()
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_S)
        cache.incr(key)
        return super().form_invalid(form)

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        cache.delete(self._key())
        return super().form_valid(form)
