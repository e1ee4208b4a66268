"""The console's pages: each views module lists its own urlpatterns."""

from app.console.views import catalog, dashboard, dead_letters, ledger, log, projections, streams, users

app_name = "console"
urlpatterns = [
    *dashboard.urlpatterns,
    *log.urlpatterns,
    *streams.urlpatterns,
    *catalog.urlpatterns,
    *projections.urlpatterns,
    *ledger.urlpatterns,
    *users.urlpatterns,
    *dead_letters.urlpatterns,
]
