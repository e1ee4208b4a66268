"""Console: Timeline (a placeholder until its page is built)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access


@access.viewer
def timeline(request: HttpRequest) -> HttpResponse:
    return render(request, "console/placeholder.html", {"title": "Timeline"})


urlpatterns = [path("timeline/", timeline, name="timeline")]
