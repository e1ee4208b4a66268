"""The console's pages: each views module lists its own urlpatterns."""

from app.console.views import catalog, dashboard, ledger, log, projections, users

app_name = "console"
urlpatterns = [
    *dashboard.urlpatterns,
    *log.urlpatterns,
    *catalog.urlpatterns,
    *projections.urlpatterns,
    *ledger.urlpatterns,
    *users.urlpatterns,
]
