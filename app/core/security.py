"""Django's SecurityMiddleware for the REST API's async-native chain (app/asgi.py).

The API must be as HTTPS-only as the console: the same redirect of plain http, the same HSTS,
nosniff and referrer headers, from the same settings. Django's own middleware would do it, but
in an async chain its mixin runs `process_request` and `process_response` through
`sync_to_async`, i.e. on Django's one shared sync thread, twice per request: exactly what the
API's chain exists to avoid. Both are pure computations on the request and response (no I/O),
so here they run inline.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

from django.http import HttpRequest, HttpResponse
from django.middleware import security


class SecurityMiddleware(security.SecurityMiddleware):
    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        redirect = self.process_request(request)
        if redirect is not None:
            return self.process_response(request, redirect)
        # Called only in an async chain, where get_response is a coroutine function.
        response = await cast(Awaitable[HttpResponse], self.get_response(request))
        return self.process_response(request, response)
