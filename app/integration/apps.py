"""Eventfold's traffic with other services: integration events published from the log (the
outbox), messages consumed exactly once in effect (the inbox and its dead letters), and live
subscriptions for outside readers. Generic: a domain (app/ledger) registers its own translations
and inbound handlers here; nothing here knows the ledger."""

from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "app.integration"
    label = "integration"
    verbose_name = "Integration"

    def ready(self) -> None:
        from django.core import checks

        from app.integration import contracts, publisher, signals  # noqa: F401  (the publisher, the start-up declare)

        checks.register(contracts.check, "eventfold")  # the integration events against their schema snapshots

        from app.core import metrics
        from app.integration.metrics import DeadLetterCollector

        if not any(isinstance(c, DeadLetterCollector) for c in metrics.STATE_COLLECTORS):
            metrics.STATE_COLLECTORS.append(DeadLetterCollector())
