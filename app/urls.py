from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path

from app.api import metrics
from app.api.api import api
from app.core import views

urlpatterns = [
    path("", include("app.console.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.scrape, name="metrics"),
    path("api/", api.urls),
    path("login/", views.login, name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    # The admin has no login of its own: its login page sends everyone to the throttled one above.
    path("admin/login/", views.admin_login),
    path("admin/", admin.site.urls),
]
