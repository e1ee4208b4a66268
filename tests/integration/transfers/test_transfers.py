"""Transfers driven to their end by the process manager on the real test worker."""

from uuid import UUID

from app.ledger import handlers
from app.ledger.models import AccountSummary, Entry, TransferSummary
from app.ledger.process import ACTOR, expire_transfers
from tests.conftest import wait_for
from tests.integration.transfers.conftest import (
    PROCESS,
    ctx,
    deliver,
    events,
    open_account,
    process_paused,
    read_models_current,
    request,
    transfer_state,
    types,
    wait_finished,
)


def _balance(account: UUID) -> int:
    return int(AccountSummary.objects.get(account_id=account).balance)


def _entries(account: UUID) -> list[tuple[str, int]]:
    return [(e.kind, e.amount) for e in Entry.objects.filter(account_id=account).order_by("version")]


def _shown(operator, transfer_id: UUID, accounts: list[UUID]) -> dict:
    """GET /api/transfers/{id}, once the read models have caught up with the transfer and its accounts."""
    wait_for(lambda: read_models_current(accounts, [transfer_id]), what="the read models")
    response = operator.get(f"/api/transfers/{transfer_id}")
    assert response.status_code == 200
    return response.json()


def test_a_transfer_is_debited_credited_completed_and_settled(worker, operator):
    source, target = open_account(100), open_account()
    transfer = request(source, target, 30)
    state = wait_finished(transfer)
    assert (state.status, state.debited, state.credited, state.refunded) == ("completed", True, True, False)
    assert _shown(operator, transfer, [source, target]) == {
        "transfer_id": str(transfer),
        "status": "completed",
        "from_account": str(source),
        "to_account": str(target),
        "amount": 30,
    }
    assert (_balance(source), _balance(target)) == (70, 30)
    assert _entries(source) == [("deposit", 100), ("transfer_out", -30)]
    assert _entries(target) == [("transfer_in", 30)]

    # one chain of cause and effect, in the request's correlation, by the process manager
    mine = events(transfer)
    assert types(mine) == [
        "TransferRequested",
        "TransferDebitConfirmed",
        "TransferCreditConfirmed",
        "TransferCompleted",
    ]
    requested, debit_confirmed, credit_confirmed, completed = mine
    [debited, settled] = events(source, transfer)
    [credited] = events(target, transfer)
    assert types([debited, settled, credited]) == ["TransferDebited", "TransferSettled", "TransferCredited"]
    chain = [
        (requested, debited),
        (debited, debit_confirmed),
        (debit_confirmed, credited),
        (credited, credit_confirmed),
        (credited, completed),
        (completed, settled),
    ]
    for cause, effect in chain:
        assert effect.metadata["causation_id"] == str(cause.event_id), (cause.type, effect.type)
        assert effect.metadata["correlation_id"] == requested.metadata["correlation_id"]
        assert effect.metadata["actor"] == ACTOR

    listed = {p["name"]: p for p in operator.get("/api/projections").json()}
    assert listed[PROCESS]["kind"] == "process" and listed["transfers"]["kind"] == "projection"


def test_a_transfer_beyond_the_balance_fails_with_insufficient_funds(worker, operator):
    source, target = open_account(10), open_account()
    transfer = request(source, target, 30)
    state = wait_finished(transfer)
    assert (state.status, state.reason, state.debited) == ("failed", "insufficient_funds", False)
    assert _shown(operator, transfer, [source, target])["reason"] == "insufficient_funds"
    assert events(source, transfer) == [] and events(target, transfer) == []
    assert (_balance(source), _balance(target)) == (10, 0)


def test_a_transfer_from_a_frozen_account_fails_and_a_frozen_target_still_receives(worker, operator):
    frozen, other = open_account(100), open_account(100)
    handlers.account_freeze(account_id=frozen, ctx=ctx())
    refused = request(frozen, other, 30)
    received = request(other, frozen, 20)
    state = wait_finished(refused)
    assert (state.status, state.reason) == ("failed", "account_frozen")
    assert events(frozen, refused) == []
    assert wait_finished(received).status == "completed"
    body = _shown(operator, refused, [frozen, other])
    assert (body["status"], body["reason"]) == ("failed", "account_frozen")
    assert (_balance(frozen), _balance(other)) == (120, 80)


def test_a_target_closed_before_the_credit_fails_the_transfer_and_refunds_the_source(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)  # accepted: the target is open
        handlers.account_close(account_id=target, ctx=ctx())
    state = wait_finished(transfer)
    assert (state.status, state.reason, state.debited, state.refunded) == ("failed", "account_closed", True, True)
    assert types(events(source, transfer)) == ["TransferDebited", "TransferRefunded"]
    assert events(target, transfer) == []
    assert types(events(transfer)) == [
        "TransferRequested",
        "TransferDebitConfirmed",
        "TransferFailed",
        "TransferRefundConfirmed",
    ]
    body = _shown(operator, transfer, [source, target])
    assert (body["status"], body["reason"]) == ("failed", "account_closed")
    assert _balance(source) == 100
    assert _entries(source) == [("deposit", 100), ("transfer_out", -30), ("refund", 30)]


def _past_deadline(transfer_id: UUID) -> list[UUID]:
    """Expire with a deadline of zero, once the read model the sweep reads knows the transfer."""
    wait_for(lambda: TransferSummary.objects.filter(transfer_id=transfer_id).exists(), what="the transfer's read model")
    assert transfer_id not in expire_transfers(deadline_s=3600), "not past an hour's deadline"
    return expire_transfers(deadline_s=0)


def test_a_transfer_past_its_deadline_before_the_debit_fails_as_expired(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)
        assert transfer in _past_deadline(transfer)
    state = wait_finished(transfer)
    assert (state.status, state.reason, state.debited) == ("failed", "expired", False)
    assert events(source, transfer) == []  # the debit step found it failed
    body = _shown(operator, transfer, [source, target])
    assert (body["status"], body["reason"]) == ("failed", "expired")
    assert _balance(source) == 100


def test_a_debited_transfer_past_its_deadline_is_refunded(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)
        deliver(events(transfer)[0])  # the debit step, by hand: the confirmation has not happened yet
        assert types(events(source, transfer)) == ["TransferDebited"]
        assert transfer in _past_deadline(transfer)
    state = wait_finished(transfer)
    assert (state.status, state.reason) == ("failed", "expired")
    assert types(events(source, transfer)) == ["TransferDebited", "TransferRefunded"]
    assert events(target, transfer) == []
    wait_for(lambda: read_models_current([source, target], [transfer]), what="the read models")
    assert _entries(source) == [("deposit", 100), ("transfer_out", -30), ("refund", 30)]


def test_once_the_debit_is_confirmed_the_deadline_no_longer_applies(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)
        deliver(events(transfer)[0])  # debit
        deliver(events(source, transfer)[0])  # confirm the debit
        assert transfer_state(transfer).debited
        assert transfer not in _past_deadline(transfer)
    assert wait_finished(transfer).status == "completed"
    wait_for(lambda: read_models_current([source, target], [transfer]), what="the read models")
    assert (_balance(source), _balance(target)) == (70, 30)


def test_a_credit_redelivered_after_the_target_closed_changes_nothing(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)
        deliver(events(transfer)[0])  # debit
        deliver(events(source, transfer)[0])  # confirm the debit
        debit_confirmed = events(transfer)[-1]
        deliver(debit_confirmed)  # credit
        handlers.account_withdraw(account_id=target, amount=30, ctx=ctx())
        handlers.account_close(account_id=target, ctx=ctx())
        before = [len(events(s)) for s in (source, target, transfer)]
        deliver(debit_confirmed)  # again: the target refuses now, but it was credited
        assert [len(events(s)) for s in (source, target, transfer)] == before
    assert wait_finished(transfer).status == "completed"


def test_redelivering_every_event_of_ended_transfers_changes_nothing(worker, operator):
    source, target, closed = open_account(100), open_account(), open_account()
    completed = request(source, target, 30)
    with process_paused(operator):
        refunded = request(source, closed, 20)
        handlers.account_close(account_id=closed, ctx=ctx())
    poor = request(target, source, 1000)
    for transfer in (completed, refunded, poor):
        wait_finished(transfer)
    streams = [source, target, closed, completed, refunded, poor]
    before = [len(events(s)) for s in streams]
    for transfer in (completed, refunded, poor):
        mine = events(transfer) + events(source, transfer) + events(target, transfer) + events(closed, transfer)
        for event in mine * 2:
            deliver(event)
    assert [len(events(s)) for s in streams] == before


def test_every_step_delivered_twice_as_it_goes_moves_money_once(worker, operator):
    source, target = open_account(100), open_account()
    with process_paused(operator):
        transfer = request(source, target, 30)
        for next_event in (
            lambda: events(transfer)[0],  # requested: debit
            lambda: events(source, transfer)[0],  # debited: confirm
            lambda: events(transfer)[1],  # debit confirmed: credit
            lambda: events(target, transfer)[0],  # credited: complete
            lambda: events(transfer)[-1],  # completed: settle
        ):
            event = next_event()
            deliver(event)
            deliver(event)
        assert types(events(source, transfer)) == ["TransferDebited", "TransferSettled"]
        assert types(events(target, transfer)) == ["TransferCredited"]
        assert transfer_state(transfer).status == "completed"
    wait_for(lambda: read_models_current([source, target], [transfer]), what="the read models")
    assert (_balance(source), _balance(target)) == (70, 30)
