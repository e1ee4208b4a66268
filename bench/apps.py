from django.apps import AppConfig


class BenchConfig(AppConfig):
    """The benchmark as a Django app of its own, so `manage.py benchmark` finds its command."""

    name = "bench"
    label = "bench"
    verbose_name = "Eventfold benchmark"
