"""`manage.py enforce_retention`: delete the expired events of the categories in
`EVENTFOLD_RETENTION`, as the owner role, in batches (each its own short transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction

from eventstore import roles
from eventstore.retention import configured
from eventstore.statements import expired_statement

BATCH = 5_000


class Command(BaseCommand):
    help = (
        "Delete for good the expired events (max_age / max_count) of the categories in EVENTFOLD_RETENTION, "
        "as the owner role; readers have left them out since they expired. Other categories are never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=BATCH, help=f"events per transaction (default {BATCH})")

    def handle(self, *args: Any, batch: int, **options: Any) -> None:
        if not 0 < batch <= 1_000_000:
            raise CommandError("--batch must be from 1 to 1000000")
        try:
            policy = configured()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not policy:
            self.stdout.write("no category has a retention rule (EVENTFOLD_RETENTION): nothing to do")
            return
        alias = roles.migrating_alias()  # the owner's, when there is one
        for rule in policy:
            statement = expired_statement(rule.max_age is not None, rule.max_count is not None)
            params = {"category": rule.category, "max_age": rule.max_age, "max_count": rule.max_count, "batch": batch}
            deleted = 0
            while True:
                with transaction.atomic(using=alias), psycopg.Cursor(connections[alias].connection) as cur:
                    cur.execute("SELECT set_config('eventfold.expiring', %s, true)", [rule.category])
                    cur.execute(statement, params)
                    count = cur.rowcount
                deleted += count
                if count < batch:
                    break
            self.stdout.write(f"{rule.category}: {deleted} expired events deleted")
