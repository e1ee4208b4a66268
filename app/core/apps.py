from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "app.core"
    label = "core"
    verbose_name = "Eventfold"

    def ready(self) -> None:
        from app.core import connections, metrics
        from eventstore import hooks

        connections.install()  # every request and Celery task starts on a clean connection
        metrics.prepare()
        if metrics.appended not in hooks.measured:
            hooks.measured.append(metrics.appended)
