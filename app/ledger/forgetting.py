"""Forgetting an account's owner, for real: the one way in for the REST API
(`POST /api/accounts/{id}/forget`), the console and `manage.py forget_subject`.

In one transaction: `AccountOwnerForgotten` is appended to the account's stream (the audit record,
the transaction's first write), the subject's key is destroyed (every sealed copy of the name in
the log becomes unreadable), the stream's snapshot is dropped, and the kept results of keyed
commands on the account and its transfers go (their keys and request fingerprints came from
requests about the owner). Then every process drops its cached aggregate states
(`commands.drop_cached_states`). The read models follow through the projection, which writes
FORGOTTEN where the name was; a rebuild writes the same, since the sealed name cannot be opened
any more.

Forgetting again is harmless: nothing more is appended, and the key and the rest are destroyed
again, which is what a restored backup needs (`forget_subject --replay`; docs/design.md,
"Forgetting and backups").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple
from uuid import UUID

import structlog
from django.db import transaction
from django.db.models import Q

from app.core import idempotency
from app.ledger import commands, handlers
from app.ledger.commands import CommandResult
from app.ledger.models import TransferSummary
from eventstore.records import START
from eventstore.store import EventStore

log = structlog.get_logger(__name__)
AUDIT_EVENT = "ledger.AccountOwnerForgotten"
PAGE = 1000  # audit events read at a time


class Forgotten(NamedTuple):
    result: CommandResult
    already: bool  # the owner had been forgotten before (nothing was appended this time)


def forget_owner(account_id: UUID, sender: commands.Sender) -> Forgotten:
    """Forget the owner of an account for a user (NotFound if there is no such account), sent as
    every command is (`commands.send`: refused while the read models are too far behind)."""
    keep = (sender.user_id, sender.idempotency_key)
    return _forget(account_id, lambda: commands.send(handlers.account_forget, sender, account_id=account_id), keep)


def forget_owner_now(account_id: UUID, actor: str) -> Forgotten:
    """The same from the command line (`manage.py forget_subject`): never held back by backpressure,
    since after a restore the read models lag far behind, and forgetting must not wait for them."""
    ctx = commands.CommandContext(actor=actor)
    return _forget(account_id, lambda: handlers.account_forget(account_id=account_id, ctx=ctx), (None, None))


def _forget(account_id: UUID, run: Callable[[], CommandResult], keep: tuple[int | None, str | None]) -> Forgotten:
    with transaction.atomic():
        result = run()
        erased = idempotency.erase(_streams_about(account_id), keep=keep)
    commands.drop_cached_states()
    already = result.outcome == "unchanged"
    log.info("account owner forgotten", account_id=str(account_id), already=already, idempotency_records=erased)
    return Forgotten(result, already)


def _streams_about(account_id: UUID) -> set[UUID]:
    """The account and its transfers (the read model's, and those on its stream): the streams
    whose commands' requests may have named the owner."""
    transfers = TransferSummary.objects.filter(Q(from_account=account_id) | Q(to_account=account_id))
    found = {account_id, *transfers.values_list("transfer_id", flat=True)}
    on_stream = commands.store().read_stream(account_id)
    found.update(UUID(e.data["transfer_id"]) for e in on_stream if "transfer_id" in e.data)
    return found


def forgotten_subjects(store: EventStore | None = None) -> Iterator[UUID]:
    """The accounts whose owner the log says were forgotten (its AccountOwnerForgotten events), in
    log order: the forget ledger that `forget_subject --replay` and `--list` read."""
    store = store or EventStore()
    after = START
    while True:
        page = store.read_all(after, limit=PAGE, categories=["account"], types=[AUDIT_EVENT])
        if not page.events:
            return
        for event in page.events:
            yield event.stream_id
        after = page.checkpoint
