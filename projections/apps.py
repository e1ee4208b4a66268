from collections.abc import Iterable

from django.apps import AppConfig


def read_model_tables() -> Iterable[str]:
    """Rebuilds drop these tables and move new ones into their place, so the application role must
    own them when migrations run as another role (eventstore.roles)."""
    from projections.base import projection_registry

    return [table for projection in projection_registry.all() for table in projection.tables]


class ProjectionsConfig(AppConfig):
    name = "projections"
    verbose_name = "Projections"

    def ready(self) -> None:
        from eventstore import roles
        from eventstore.hooks import after_append
        from projections.wakeups import on_append

        if on_append not in after_append:
            after_append.append(on_append)
        if read_model_tables not in roles.app_owned_tables:
            roles.app_owned_tables.append(read_model_tables)
