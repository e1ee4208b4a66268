"""The command path without a database: `commands.send`, the handlers and the transfer process
manager's steps on the in-memory event store (the same contract as PostgreSQL's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from app.ledger import commands, handlers
from app.ledger.commands import CommandContext, NotFound, Sender
from app.ledger.domain import errors
from app.ledger.domain.account import Account
from app.ledger.domain.events import FundsDeposited
from app.ledger.domain.transfer import Transfer
from eventstore import hooks
from eventstore.errors import ConcurrencyError, DuplicateEventError, SubjectForgotten
from eventstore.memory import InMemoryEventStore
from projections import backpressure


class RacingStore(InMemoryEventStore):
    """A store where another writer appends a deposit to a stream just before each of the next
    `races` appends to it: the command loses the race and must reload."""

    def __init__(self) -> None:
        super().__init__()
        self.races: dict[UUID, int] = {}

    def append(self, stream_id: UUID, category: str, events: Any, **kwargs: Any) -> Any:
        if self.races.get(stream_id, 0) > 0:
            self.races[stream_id] -= 1
            super().append(stream_id, category, [FundsDeposited(amount=1)])
        return super().append(stream_id, category, events, **kwargs)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[RacingStore]:
    """Commands on memory: no database, no Redis (backpressure says all is well), no subscribers."""
    monkeypatch.setattr(backpressure, "too_far_behind", lambda: False)
    memory = RacingStore()
    with hooks.suspended(), commands.using(memory):
        yield memory


def ctx(**fields: Any) -> CommandContext:
    return CommandContext(actor="unit", **fields)


def opened(balance: int = 0, **fields: Any) -> UUID:
    account = handlers.account_open(owner="Ann", currency="EUR", ctx=ctx(), **fields).stream_id
    if balance:
        handlers.account_deposit(account_id=account, amount=balance, ctx=ctx())
    return account


def types(store: InMemoryEventStore, stream_id: UUID) -> list[str]:
    return [e.type.removeprefix("ledger.") for e in store.read_stream(stream_id)]


# -- send: context, ids, idempotency by derived ids ----------------------------------------------
def test_send_derives_the_new_stream_and_every_event_id_from_the_command_id(store):
    command_id = uuid4()
    result = commands.send(
        handlers.account_open, Sender(actor="olga", command_id=command_id), owner="Ann", currency="EUR"
    )
    assert result.version == 1 and result.outcome == "appended"
    [event] = store.read_stream(result.stream_id)
    assert event.event_id == CommandContext(actor="x", command_id=command_id).event_ids(1)[0]
    assert event.metadata["actor"] == "olga" and event.metadata["command"] == "OpenAccount"
    again = commands.send(
        handlers.account_open, Sender(actor="olga", command_id=command_id), owner="Ann", currency="EUR"
    )
    assert again.stream_id == result.stream_id and types(store, result.stream_id) == ["AccountOpened"]


def test_a_command_sent_again_after_the_stream_moved_on_gets_its_first_result(store):
    account = opened()
    sender = Sender(actor="olga", command_id=uuid4())
    first = commands.send(handlers.account_deposit, sender, account_id=account, amount=5)
    handlers.account_deposit(account_id=account, amount=7, ctx=ctx())
    again = commands.send(handlers.account_deposit, sender, account_id=account, amount=5)
    assert again == first._replace(outcome="repeated")
    assert types(store, account) == ["AccountOpened", "FundsDeposited", "FundsDeposited"]


def test_ids_used_by_another_command_on_another_stream_are_refused_not_repeated(store):
    sender = Sender(actor="olga", command_id=uuid4())
    commands.send(handlers.account_deposit, sender, account_id=opened(), amount=5)
    with pytest.raises(DuplicateEventError) as refused:
        commands.send(handlers.account_deposit, sender, account_id=opened(), amount=5)
    assert commands.refusal(refused.value).code == "idempotency_key_reused"


def test_nothing_to_do_answers_where_the_stream_stands(store):
    account = opened()
    frozen = handlers.account_freeze(account_id=account, ctx=ctx())
    again = handlers.account_freeze(account_id=account, ctx=ctx())
    assert again.outcome == "unchanged" and (again.version, again.position) == (frozen.version, frozen.position)


def test_backpressure_refuses_before_anything_is_appended(store, monkeypatch):
    account = opened()
    monkeypatch.setattr(backpressure, "too_far_behind", lambda: True)
    with pytest.raises(commands.Backpressure) as refused:
        commands.send(handlers.account_deposit, Sender(actor="olga"), account_id=account, amount=5)
    answer = commands.refusal(refused.value)
    assert (answer.status, answer.code) == (503, "backpressure") and "Retry-After" in answer.headers
    assert types(store, account) == ["AccountOpened"]


# -- the load-act-save loop: retries and If-Match ----------------------------------------------
def test_a_lost_race_is_retried_on_the_new_state(store):
    account = opened(balance=10)
    store.races[account] = 2
    result = handlers.account_withdraw(account_id=account, amount=10, ctx=ctx())
    assert result.version == 5 and types(store, account)[-1] == "FundsWithdrawn"
    assert commands.load(Account, account).state.balance == 2  # 10 + the racers' 2 - 10


def test_a_race_lost_more_than_the_retries_is_a_conflict(store):
    account = opened()
    store.races[account] = commands.CONFLICT_RETRIES + 1
    with pytest.raises(ConcurrencyError):
        handlers.account_deposit(account_id=account, amount=1, ctx=ctx())


def test_if_match_is_never_retried(store):
    account = opened()
    assert handlers.account_deposit(account_id=account, amount=1, ctx=ctx(expected_version=1)).version == 2
    with pytest.raises(ConcurrencyError) as stale:
        handlers.account_deposit(account_id=account, amount=1, ctx=ctx(expected_version=1))
    answer = commands.refusal(stale.value)
    assert (answer.status, answer.code, answer.extra) == (409, "concurrency_conflict", {"version": 2})
    store.races[account] = 1
    with pytest.raises(ConcurrencyError):
        handlers.account_deposit(account_id=account, amount=1, ctx=ctx(expected_version=2))
    assert store.stream_version(account) == 3  # the racer's deposit only


# -- each refusal, answered from the one table ---------------------------------------------------
def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(commands.REFUSABLE) as caught:
        call()
    answer = commands.refusal(caught.value)
    assert answer is not None and commands.CODES[answer.code] == answer.status
    return answer.status, answer.code


def test_every_business_rule_is_a_422_with_its_code(store):
    poor, other = opened(balance=10), opened()
    dollars = handlers.account_open(owner="Bob", currency="USD", ctx=ctx()).stream_id
    assert refused(lambda: handlers.account_withdraw(account_id=poor, amount=11, ctx=ctx())) == (
        422,
        "insufficient_funds",
    )
    assert refused(lambda: handlers.account_close(account_id=poor, ctx=ctx())) == (422, "balance_not_zero")
    assert refused(lambda: handlers.transfer_request(from_account=poor, to_account=poor, amount=1, ctx=ctx())) == (
        422,
        "same_account",
    )
    assert refused(lambda: handlers.transfer_request(from_account=poor, to_account=dollars, amount=1, ctx=ctx())) == (
        422,
        "currency_mismatch",
    )
    handlers.account_freeze(account_id=poor, ctx=ctx())
    assert refused(lambda: handlers.account_withdraw(account_id=poor, amount=1, ctx=ctx())) == (422, "account_frozen")
    handlers.account_close(account_id=other, ctx=ctx())
    assert refused(lambda: handlers.account_deposit(account_id=other, amount=1, ctx=ctx())) == (422, "account_closed")


def test_an_account_with_a_transfer_in_flight_cannot_close(store):
    source, target = opened(balance=10), opened()
    transfer = handlers.transfer_request(from_account=source, to_account=target, amount=10, ctx=ctx()).stream_id
    handlers.transfer_debit(transfer_id=transfer, ctx=ctx())
    assert refused(lambda: handlers.account_close(account_id=source, ctx=ctx())) == (422, "transfers_pending")


def test_unknown_streams_are_404(store):
    assert refused(lambda: handlers.account_deposit(account_id=uuid4(), amount=1, ctx=ctx())) == (404, "not_found")
    assert refused(
        lambda: handlers.transfer_request(from_account=opened(), to_account=uuid4(), amount=1, ctx=ctx())
    ) == (404, "not_found")


def test_invalid_event_data_is_a_validation_error_naming_the_field(store):
    with pytest.raises(commands.REFUSABLE) as caught:
        handlers.account_open(owner="Ann", currency="EUR", overdraft_limit=-1, ctx=ctx())
    answer = commands.refusal(caught.value)
    assert (answer.status, answer.code) == (422, "validation_error") and "overdraft_limit" in answer.fields


def test_a_forgotten_subject_takes_no_new_personal_data(store):
    account = opened()
    store.subject_keys.forget(account)
    with pytest.raises(SubjectForgotten):
        handlers.account_open(owner="Ann", currency="EUR", ctx=ctx(), account_id=account)
    assert refused(lambda: handlers.account_open(owner="Ann", currency="EUR", ctx=ctx(), account_id=account)) == (
        422,
        "subject_forgotten",
    )


def test_forgetting_appends_the_audit_event_once_destroys_the_key_and_drops_the_snapshot(store):
    account = opened(balance=5)
    store.save_snapshot(account, "account", 2, 1, "a snapshot naming Ann")
    first = handlers.account_forget(account_id=account, ctx=ctx())
    assert (first.outcome, types(store, account)[-1]) == ("appended", "AccountOwnerForgotten")
    assert store.subject_keys.get([account]) == {account: None} and store.snapshot(account) is None
    assert store.read_stream(account)[0].data["owner"] == "[forgotten]"
    again = handlers.account_forget(account_id=account, ctx=ctx())
    assert (again.outcome, again.version) == ("unchanged", first.version)
    assert handlers.account_deposit(account_id=account, amount=3, ctx=ctx()).outcome == "appended"
    assert commands.load(Account, account).state.balance == 8


def test_forgetting_an_unknown_account_is_not_found(store):
    assert refused(lambda: handlers.account_forget(account_id=uuid4(), ctx=ctx())) == (404, "not_found")


def test_the_table_knows_every_business_rule_and_nothing_else():
    assert set(commands.CODES) >= {cls.code for cls in errors.LedgerError.__subclasses__()}
    assert commands.refusal(RuntimeError("a bug")) is None


# -- the transfer process manager's steps --------------------------------------------------------
def requested(amount: int, balance: int = 10) -> tuple[UUID, UUID, UUID]:
    source, target = opened(balance=balance), opened()
    transfer = handlers.transfer_request(from_account=source, to_account=target, amount=amount, ctx=ctx())
    return transfer.stream_id, source, target


def test_every_step_of_a_transfer_and_each_redelivered_step_does_nothing_twice(store):
    transfer, source, target = requested(10)
    steps = [
        handlers.transfer_debit,
        handlers.transfer_confirm_debit,
        handlers.transfer_credit,
        handlers.transfer_complete,
        handlers.transfer_settle,
    ]
    for step in steps:
        trigger = ctx()
        assert step(transfer_id=transfer, ctx=trigger) is not None, step.__name__
        assert step(transfer_id=transfer, ctx=trigger) is None, f"{step.__name__} redelivered"
    assert types(store, source) == ["AccountOpened", "FundsDeposited", "TransferDebited", "TransferSettled"]
    assert types(store, target) == ["AccountOpened", "TransferCredited"]
    assert commands.load(Transfer, transfer).state.status == "completed"


def test_a_debit_refused_fails_the_transfer_with_its_reason(store):
    transfer, source, _ = requested(11)
    assert handlers.transfer_debit(transfer_id=transfer, ctx=ctx()) is not None
    state = commands.load(Transfer, transfer).state
    assert (state.status, state.reason) == ("failed", "insufficient_funds")
    assert handlers.transfer_refund(transfer_id=transfer, ctx=ctx()) is None  # nothing was debited
    assert types(store, source) == ["AccountOpened", "FundsDeposited"]


def test_a_credit_to_a_closed_account_fails_and_refunds(store):
    transfer, source, target = requested(10)
    handlers.transfer_debit(transfer_id=transfer, ctx=ctx())
    handlers.transfer_confirm_debit(transfer_id=transfer, ctx=ctx())
    handlers.account_close(account_id=target, ctx=ctx())
    handlers.transfer_credit(transfer_id=transfer, ctx=ctx())
    assert commands.load(Transfer, transfer).state.reason == "account_closed"
    assert handlers.transfer_refund(transfer_id=transfer, ctx=ctx()) is not None
    assert handlers.transfer_confirm_refund(transfer_id=transfer, ctx=ctx()) is not None
    assert types(store, source)[-1] == "TransferRefunded"


def test_a_debit_confirmed_after_expiry_goes_back(store):
    transfer, source, _ = requested(10)
    handlers.transfer_debit(transfer_id=transfer, ctx=ctx())
    assert handlers.transfer_expire(transfer_id=transfer, ctx=ctx()) is not None
    assert handlers.transfer_confirm_debit(transfer_id=transfer, ctx=ctx()) is not None  # the refund
    assert types(store, source)[-1] == "TransferRefunded"


def test_a_step_on_a_missing_stream_raises_not_found(store):
    with pytest.raises(NotFound):
        handlers.transfer_debit(transfer_id=uuid4(), ctx=ctx())
