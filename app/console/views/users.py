"""Console: Users (a placeholder until its page is built)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from app.console import access


@access.admin
def users(request: HttpRequest) -> HttpResponse:
    return render(request, "console/placeholder.html", {"title": "Users"})


urlpatterns = [path("users/", users, name="users")]
