"""The console's pages: each views module lists its own urlpatterns."""

from app.console.views import catalog, dashboard, ledger, log, projections, streams, users

app_name = "console"
urlpatterns = [
    *dashboard.urlpatterns,
    *log.urlpatterns,
    *streams.urlpatterns,
    *catalog.urlpatterns,
    *projections.urlpatterns,
    *ledger.urlpatterns,
    *users.urlpatterns,
]
