from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "app.ledger"
    label = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from app.ledger import process, projections, registry  # noqa: F401  (registers event types, projections, process)
