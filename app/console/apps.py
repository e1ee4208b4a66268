from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "app.console"
    label = "console"
    verbose_name = "Live console"

    def ready(self) -> None:
        from app.console import hooks

        hooks.register()  # live hints from the worker, rebuilds and appends
