"""The transfer aggregate and its synchronous checks."""

from uuid import uuid4

from app.ledger.domain import errors
from app.ledger.domain.account import AccountState
from app.ledger.domain.events import (
    TransferCompleted,
    TransferCreditConfirmed,
    TransferDebitConfirmed,
    TransferFailed,
    TransferRefundConfirmed,
    TransferRequested,
)
from app.ledger.domain.transfer import Transfer
from eventstore.testing import given

A, B, T = uuid4(), uuid4(), uuid4()
EUR = AccountState(owner="a", currency="EUR", balance=100)
REQUESTED = TransferRequested(from_account=A, to_account=B, amount=10, currency="EUR")


def request(source=EUR, target=EUR, src=A, dst=B):
    return lambda: Transfer.request(T, source=(src, source), target=(dst, target), amount=10)


def test_request():
    given(Transfer).when_new(request()).then(REQUESTED)


def test_request_checks():
    given(Transfer).when_new(request(dst=A)).then_raises(errors.SameAccount)
    given(Transfer).when_new(request(target=EUR.model_copy(update={"currency": "USD"}))).then_raises(
        errors.CurrencyMismatch
    )
    closed = EUR.model_copy(update={"status": "closed"})
    given(Transfer).when_new(request(source=closed)).then_raises(errors.AccountClosed, match="source")
    given(Transfer).when_new(request(target=closed)).then_raises(errors.AccountClosed, match="target")


def test_the_happy_path_and_its_idempotent_steps():
    s = given(Transfer, REQUESTED).when(lambda t: (t.confirm_debit(), t.confirm_credit(), t.complete()))
    s.then(TransferDebitConfirmed(), TransferCreditConfirmed(), TransferCompleted())
    assert s.state.status == "completed"
    done = (REQUESTED, TransferDebitConfirmed(), TransferCreditConfirmed(), TransferCompleted())
    given(Transfer, *done).when(lambda t: (t.confirm_debit(), t.complete(), t.fail("expired"))).then_nothing()


def test_failure_and_refund():
    s = given(Transfer, REQUESTED, TransferDebitConfirmed()).when(
        lambda t: (t.fail("credit_failed"), t.confirm_refund(), t.confirm_refund())
    )
    s.then(TransferFailed(reason="credit_failed"), TransferRefundConfirmed())
    assert s.state.status == "failed" and s.state.reason == "credit_failed" and s.state.refunded
    given(Transfer, REQUESTED).when(lambda t: t.confirm_refund()).then_nothing()  # nothing was debited
