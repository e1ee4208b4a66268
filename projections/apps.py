from django.apps import AppConfig


class ProjectionsConfig(AppConfig):
    name = "projections"
    verbose_name = "Projections"

    def ready(self) -> None:
        from eventstore.hooks import after_append
        from projections.wakeups import on_append

        if on_append not in after_append:
            after_append.append(on_append)
