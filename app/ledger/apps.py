from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "app.ledger"
    label = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from app.ledger import inbound, integration, process, projections, registry  # noqa: F401  (registers event types, integration events, projections, process, inbound messages)
