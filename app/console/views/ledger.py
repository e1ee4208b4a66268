"""Console: Accounts (a placeholder until its page is built)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access


@access.viewer
def accounts(request: HttpRequest) -> HttpResponse:
    return render(request, "console/placeholder.html", {"title": "Accounts"})


@access.viewer
def transfers(request: HttpRequest) -> HttpResponse:
    return render(request, "console/placeholder.html", {"title": "Transfers"})


urlpatterns = [path("accounts/", accounts, name="accounts"), path("transfers/", transfers, name="transfers")]
