from django.apps import AppConfig
from django.core import checks


class EventstoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"

    def ready(self) -> None:
        from eventstore import contracts

        checks.register(contracts.check, "eventfold")  # the event types against their schema snapshots
