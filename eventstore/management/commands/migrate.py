"""`manage.py migrate`, as the owner role when one is configured (`DATABASE_OWNER_URL`).

Django's own command, with two changes (see `eventstore.roles`): without `--database` it runs as
the `owner` alias when there is one, and there it first checks that the application role could
not change the log anyway, and afterwards grants the application role its privileges, at every
run. `--database default` still migrates as DATABASE_URL's role: for a scratch schema that role
owns (the benchmark's), never for the live database.

While it runs, the ORM reads and writes through the migrating alias: a data migration that uses a
model's default manager (not `.using(schema_editor.connection.alias)`) would otherwise query
through `default`, another session, which cannot see the tables the migration has just made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.core.management.commands import migrate
from django.db import connections, router, transaction

from eventstore import roles


class Command(migrate.Command):
    help = (
        "Updates the database schema, as the owner role (DATABASE_OWNER_URL) when one is configured, "
        "then grants the application role (DATABASE_URL) its privileges."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(database=None)

    def execute(self, *args: Any, **options: Any) -> str | None:
        options["database"] = options.get("database") or roles.migrating_alias()
        return super().execute(*args, **options)

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        app = roles.app_role() if alias == roles.OWNER_ALIAS else None
        if app is not None:
            connection = connections[alias]
            with connection.cursor() as cur:
                problems = roles.audit(cur, app)
                if problems:
                    cur.execute("SELECT current_user, current_database()")
                    owner, database = cur.fetchone()
                    raise CommandError(roles.explain(problems, app, owner, database))
        with routed_to(alias):
            super().handle(*args, **options)
        if app is not None:
            with transaction.atomic(using=alias), connections[alias].cursor() as cur:
                try:
                    roles.secure(cur, app)
                except PermissionError as exc:
                    raise CommandError(str(exc)) from exc
            if options["verbosity"] >= 1:
                self.stdout.write(f"Granted the application role {app} its privileges (eventstore.roles).")


class _To:
    """A database router that sends every ORM read and write to one alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.alias


@contextmanager
def routed_to(alias: str) -> Iterator[None]:
    """Inside the block, the ORM uses `alias` unless told otherwise (first among the routers)."""
    if alias == "default":
        yield
        return
    first = _To(alias)
    router.routers.insert(0, first)
    try:
        yield
    finally:
        router.routers.remove(first)
