"""Forget account owners from the command line (as `POST /api/accounts/{id}/forget` does).

    manage.py forget_subject ACCOUNT_ID [ACCOUNT_ID ...]   forget these owners
    manage.py forget_subject --list                         the forget ledger: every account whose
                                                            owner the log says was forgotten, one id
                                                            a line (keep it outside the backups)
    manage.py forget_subject --replay [--from FILE]         after restoring a backup: forget again
                                                            every owner in the log's forget ledger
                                                            and in FILE (ids, one a line; - reads
                                                            standard input)

A restored backup brings back the keys destroyed after it was taken (and, if it is older than
the forgetting, the names in the read models and snapshots): `--replay` destroys them again and
appends the audit event where the restored log lacks it. Nothing is held back by backpressure.
Exits 1 if an id is not an account (with --replay, ids unknown to the restored store are only
reported: the backup may predate the account).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from app.ledger import forgetting
from app.ledger.commands import NotFound
from eventstore.personal_data import SubjectKeys

ACTOR = "manage.py forget_subject"


def _uuid(text: str) -> UUID:
    try:
        return UUID(text.strip())
    except ValueError:
        raise CommandError(f"{text.strip()!r} is not an account id (a UUID)") from None


def _ids_in(source: str) -> list[UUID]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    return [_uuid(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class Command(BaseCommand):
    help = "Forget account owners (audit event, key destroyed, the name gone everywhere); --replay after a restore."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account_ids", nargs="*", help="accounts whose owner to forget")
        parser.add_argument("--list", action="store_true", help="print the ids of every forgotten owner in the log")
        parser.add_argument("--replay", action="store_true", help="forget again every owner forgotten before")
        parser.add_argument("--from", dest="source", help="with --replay: a file of ids kept outside the backups")

    def handle(self, *args: Any, **options: Any) -> None:
        given = [_uuid(text) for text in options["account_ids"]]
        if sum([bool(given), options["list"], options["replay"]]) != 1:
            raise CommandError("give account ids, or --list, or --replay")
        if options["source"] and not options["replay"]:
            raise CommandError("--from goes with --replay")
        if options["list"]:
            for account_id in dict.fromkeys(forgetting.forgotten_subjects()):
                self.stdout.write(str(account_id))
            return
        if options["replay"]:
            wanted = list(forgetting.forgotten_subjects())
            if options["source"]:
                try:
                    wanted += _ids_in(options["source"])
                except OSError as exc:
                    raise CommandError(f"cannot read {options['source']}: {exc.strerror}") from None
            self._replay(dict.fromkeys(wanted))
            return
        for account_id in given:
            try:
                done = forgetting.forget_owner_now(account_id, ACTOR)
            except NotFound:
                raise CommandError(f"no account {account_id}") from None
            when = "was forgotten before; its key is destroyed (again)" if done.already else "is forgotten"
            self.stdout.write(f"account {account_id}: the owner {when} (version {done.result.version})")

    def _replay(self, account_ids: Iterable[UUID]) -> None:
        keys = SubjectKeys()
        counts = {"appended": 0, "keys": 0, "unknown": 0, "subjects": 0}
        for account_id in account_ids:
            counts["subjects"] += 1
            had_key = keys.get([account_id]).get(account_id) is not None
            try:
                done = forgetting.forget_owner_now(account_id, ACTOR)
            except NotFound:
                counts["unknown"] += 1
                self.stdout.write(f"account {account_id}: not in this store (the backup predates it)")
                continue
            counts["appended"] += not done.already
            counts["keys"] += had_key
        self.stdout.write(
            f"replayed {counts['subjects']} forgotten owners: {counts['keys']} keys destroyed, "
            f"{counts['appended']} audit events appended, {counts['unknown']} not in this store"
        )
