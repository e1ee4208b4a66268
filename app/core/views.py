from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from eventstore.store import EventStore


def home(request: HttpRequest) -> HttpResponse:
    head = EventStore().head()
    return render(request, "home.html", {"head": head})


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable", "failing": ["database"]}, status=503)
    return JsonResponse({"status": "ok"})
