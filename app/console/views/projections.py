"""Console: Projections (a placeholder until its page is built)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access


@access.viewer
def projections(request: HttpRequest) -> HttpResponse:
    return render(request, "console/placeholder.html", {"title": "Projections"})


urlpatterns = [path("projections/", projections, name="projections")]
