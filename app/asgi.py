"""ASGI entry point: `uvicorn app.asgi:application`.

The REST API under /api/ is served by its own Django handler with a short, async-native
middleware chain: Django's session, CSRF, auth and message middleware are sync-only and would
each move every request to Django's one shared sync thread and back, twice. API requests carry
bearer tokens, not cookies, so they need none of them. Everything else gets the full chain.
The API's request bodies are bounded on the bytes received, around Django's handler (`BodyLimit`).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from app.api.middleware import BodyLimit  # noqa: E402


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


# Bodies are bounded as they arrive, before Django's handler would read them whole (app/api/middleware.py).
api_application = BodyLimit(ApiHandler())

from app.console.routing import websocket_application  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        return await websocket_application(scope, receive, send)
    if scope["type"] == "http" and scope["path"].startswith("/api/"):
        return await api_application(scope, receive, send)
    return await django_application(scope, receive, send)
