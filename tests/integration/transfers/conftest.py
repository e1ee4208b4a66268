"""The transfer process manager on the real test worker: builders, waits and a pause that
leaves no run of the process manager halfway."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID, uuid4

from django.db import connection

from app.ledger import handlers
from app.ledger.commands import CommandContext
from app.ledger.domain.account import Account, AccountState
from app.ledger.domain.transfer import Transfer, TransferState
from app.ledger.process import TransferProcess
from eventstore.records import BUCKETS, RecordedEvent
from eventstore.repository import Repository
from eventstore.store import EventStore
from projections.processes import advisory_key, process_registry
from projections.status import applied
from tests.conftest import wait_for
from tests.integration.api.conftest import Api, operator  # noqa: F401  (an operator's API client)
from tests.integration.projections.conftest import worker  # noqa: F401  (the session's test worker, at the log's head)

PROCESS = TransferProcess.name


def ctx() -> CommandContext:
    return CommandContext(actor="test")


def open_account(balance: int = 0, owner: str = "Tess Transfer", account_id: UUID | None = None) -> UUID:
    account = handlers.account_open(account_id=account_id or uuid4(), owner=owner, currency="EUR", ctx=ctx()).stream_id
    if balance:
        handlers.account_deposit(account_id=account, amount=balance, ctx=ctx())
    return account


def request(source: UUID, target: UUID, amount: int, transfer_id: UUID | None = None) -> UUID:
    return handlers.transfer_request(
        transfer_id=transfer_id or uuid4(), from_account=source, to_account=target, amount=amount, ctx=ctx()
    ).stream_id


def transfer_state(transfer_id: UUID) -> TransferState:
    return Repository(Transfer, EventStore()).load(transfer_id).state


def account_state(account_id: UUID) -> AccountState:
    return Repository(Account, EventStore()).load(account_id).state


def finished(transfer_id: UUID) -> TransferState | None:
    """The transfer's state once it has ended and the process manager has nothing left to do for it:
    nothing of it in flight on the source, a confirmed debit's refund confirmed."""
    state = transfer_state(transfer_id)
    assert state.from_account is not None
    if state.status == "pending" or transfer_id in account_state(state.from_account).in_flight:
        return None
    if state.status == "failed" and state.debited and not state.refunded:
        return None
    return state


def wait_finished(transfer_id: UUID, timeout: float = 30) -> TransferState:
    return wait_for(lambda: finished(transfer_id), timeout=timeout, what=f"transfer {transfer_id} to end")


def read_models_current(accounts: list[UUID], transfers: list[UUID]) -> bool:
    """The read models have applied every event of these accounts and transfers."""
    store = EventStore()
    last = [(a, ["account_summary", "account_entries"]) for a in accounts] + [(t, ["transfers"]) for t in transfers]
    return all(applied(names, store.read_stream(s, backwards=True, limit=1)[0].position) for s, names in last)


def events(stream_id: UUID, transfer_id: UUID | None = None) -> list[RecordedEvent]:
    """A stream's events (an account's: only those of the transfer, when given)."""
    found = EventStore().read_stream(stream_id)
    if transfer_id is None:
        return found
    return [e for e in found if e.data.get("transfer_id") == str(transfer_id)]


def types(found: list[RecordedEvent]) -> list[str]:
    return [e.type.removeprefix("ledger.") for e in found]


def deliver(event: RecordedEvent) -> None:
    """Hand an event to the process manager here, as the worker does (a step run by hand, or a redelivery)."""
    process = process_registry.get(PROCESS)
    if event.type in process.handlers:
        process.handle(event)


def _quiesce() -> None:
    """Wait until no run of the process manager is halfway through a bucket (each holds its
    session lock while it runs; once paused, a new run stops before reading anything)."""
    key = advisory_key(PROCESS)
    with connection.cursor() as cur:
        for bucket in range(BUCKETS):
            cur.execute("SELECT pg_advisory_lock(%s, %s), pg_advisory_unlock(%s, %s)", [key, bucket, key, bucket])


@contextmanager
def process_paused(api: Api) -> Iterator[None]:
    """The process manager paused through the API (projections keep running), then resumed."""
    assert api.post(f"/api/projections/{PROCESS}/pause").json() == {"name": PROCESS, "status": "paused"}
    _quiesce()
    try:
        yield
    finally:
        assert api.post(f"/api/projections/{PROCESS}/resume").status_code == 200
