from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "app.console"
    label = "console"
    verbose_name = "Live console"
