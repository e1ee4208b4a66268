"""The benchmark's ASGI application: the real one (`app.asgi:application`), plus the minimal
deposit endpoint under /bench/ (bench/endpoint.py) on a Django handler of its own with no
middleware. Served only by the benchmark's stack (bench/app_workloads.py), with the same server
command as the real application."""

import importlib
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

from django.core.handlers.asgi import ASGIHandler

# The real application (which sets Django up); imported by name, as uvicorn does: app/asgi.py is
# no module mypy checks.
app_application = importlib.import_module("app.asgi").application
from bench import endpoint  # noqa: E402  (once Django is set up)


class EndpointHandler(ASGIHandler):
    """Django's ASGI handler with no middleware, resolving only bench/endpoint.py's URLs."""

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = []
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    def create_request(self, scope, body_file):
        request, response = super().create_request(scope, body_file)
        if request is not None:
            request.urlconf = endpoint.__name__
        return request, response


endpoint_application = EndpointHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(endpoint.PATH_PREFIX):
        return await endpoint_application(scope, receive, send)
    return await app_application(scope, receive, send)
