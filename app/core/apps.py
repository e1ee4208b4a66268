from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "app.core"
    label = "core"
    verbose_name = "Eventfold"

    def ready(self) -> None:
        from app.core import connections

        connections.install()  # every request and Celery task starts on a clean connection
