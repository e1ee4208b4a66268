"""Every account rule, given/when/then, no I/O."""

from uuid import uuid4

import pytest
from pydantic import ValidationError

from app.ledger.domain import errors
from app.ledger.domain.account import Account
from app.ledger.domain.events import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountOwnerForgotten,
    AccountUnfrozen,
    FundsDeposited,
    FundsWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSettled,
)
from eventstore.testing import given

OPENED = AccountOpened(owner="Ann Example", currency="EUR")
T1 = uuid4()


def test_open():
    sid = uuid4()
    scenario = given(Account).when_new(lambda: Account.open(sid, owner="Ann Example", currency="EUR"))
    scenario.then(AccountOpened(owner="Ann Example", currency="EUR", overdraft_limit=0))
    assert scenario.state.status == "open" and scenario.aggregate.id == sid


@pytest.mark.parametrize("amount", [0, -1, 2**63])
def test_amounts_are_positive_64_bit_integers(amount):
    with pytest.raises(ValidationError):
        FundsDeposited(amount=amount)


def test_currency_is_three_capitals():
    with pytest.raises(ValidationError):
        AccountOpened(owner="x", currency="eur")


def test_deposit():
    given(Account, OPENED).when(lambda a: a.deposit(500, "salary")).then(FundsDeposited(amount=500, reference="salary"))


def test_a_deposit_that_names_its_currency_must_be_in_the_accounts():
    deposit = FundsDeposited(amount=5, channel="inbox")
    given(Account, OPENED).when(lambda a: a.deposit(5, channel="inbox", currency="EUR")).then(deposit)
    given(Account, OPENED).when(lambda a: a.deposit(5, currency="USD")).then_raises(errors.CurrencyMismatch)


def test_withdraw_within_the_balance():
    s = given(Account, OPENED, FundsDeposited(amount=100)).when(lambda a: a.withdraw(100))
    s.then(FundsWithdrawn(amount=100))
    assert s.state.balance == 0


def test_withdraw_beyond_the_balance_is_insufficient_funds():
    given(Account, OPENED, FundsDeposited(amount=100)).when(lambda a: a.withdraw(101)).then_raises(
        errors.InsufficientFunds
    )


def test_the_overdraft_limit_allows_a_negative_balance_down_to_minus_the_limit():
    opened = AccountOpened(owner="Ann", currency="EUR", overdraft_limit=50)
    s = given(Account, opened).when(lambda a: a.withdraw(50))
    s.then(FundsWithdrawn(amount=50))
    assert s.state.balance == -50
    given(Account, opened).when(lambda a: a.withdraw(51)).then_raises(errors.InsufficientFunds)


def test_a_frozen_account_takes_deposits_and_incoming_transfers_but_no_withdrawals():
    frozen = (OPENED, FundsDeposited(amount=100), AccountFrozen())
    given(Account, *frozen).when(lambda a: a.deposit(5)).then(FundsDeposited(amount=5))
    given(Account, *frozen).when(lambda a: a.credit_from_transfer(T1, 5)).then(
        TransferCredited(transfer_id=T1, amount=5)
    )
    given(Account, *frozen).when(lambda a: a.withdraw(5)).then_raises(errors.AccountFrozen)
    given(Account, *frozen).when(lambda a: a.debit_for_transfer(T1, 5)).then_raises(errors.AccountFrozen)


def test_freeze_and_unfreeze():
    given(Account, OPENED).when(lambda a: a.freeze("audit")).then(AccountFrozen(reason="audit"))
    given(Account, OPENED, AccountFrozen()).when(lambda a: a.freeze()).then_nothing()
    given(Account, OPENED, AccountFrozen()).when(lambda a: a.unfreeze("ok")).then(AccountUnfrozen(reason="ok"))
    given(Account, OPENED).when(lambda a: a.unfreeze()).then_nothing()


@pytest.mark.parametrize(
    "command",
    [
        lambda a: a.deposit(1),
        lambda a: a.withdraw(1),
        lambda a: a.freeze(),
        lambda a: a.unfreeze(),
        lambda a: a.close(),
        lambda a: a.debit_for_transfer(T1, 1),
        lambda a: a.credit_from_transfer(T1, 1),
    ],
)
def test_a_closed_account_takes_nothing(command):
    given(Account, OPENED, AccountClosed()).when(command).then_raises(errors.AccountClosed)


def test_close_only_at_zero_balance():
    given(Account, OPENED).when(lambda a: a.close("moving")).then(AccountClosed(reason="moving"))
    given(Account, OPENED, FundsDeposited(amount=1)).when(lambda a: a.close()).then_raises(errors.BalanceNotZero)
    overdrawn = AccountOpened(owner="Ann", currency="EUR", overdraft_limit=10)
    given(Account, overdrawn, FundsWithdrawn(amount=3)).when(lambda a: a.close()).then_raises(errors.BalanceNotZero)


def test_close_not_while_a_transfer_is_in_flight():
    in_flight = (OPENED, FundsDeposited(amount=10), TransferDebited(transfer_id=T1, amount=10))
    given(Account, *in_flight).when(lambda a: a.close()).then_raises(errors.TransfersPending)
    settled = (*in_flight, TransferSettled(transfer_id=T1))
    given(Account, *settled).when(lambda a: a.close()).then(AccountClosed())
    refunded = (*in_flight, TransferRefunded(transfer_id=T1, amount=10))
    given(Account, *refunded).when(lambda a: a.close()).then_raises(errors.BalanceNotZero)


def test_transfer_debit_is_checked_and_idempotent():
    funded = (OPENED, FundsDeposited(amount=10))
    given(Account, *funded).when(lambda a: a.debit_for_transfer(T1, 10)).then(
        TransferDebited(transfer_id=T1, amount=10)
    )
    given(Account, *funded).when(lambda a: a.debit_for_transfer(T1, 11)).then_raises(errors.InsufficientFunds)
    debited = (*funded, TransferDebited(transfer_id=T1, amount=10))
    given(Account, *debited).when(lambda a: a.debit_for_transfer(T1, 10)).then_nothing()


def test_refund_returns_the_money_once():
    debited = (OPENED, FundsDeposited(amount=10), TransferDebited(transfer_id=T1, amount=10))
    s = given(Account, *debited).when(lambda a: a.refund_transfer(T1, 10))
    s.then(TransferRefunded(transfer_id=T1, amount=10))
    assert s.state.balance == 10 and s.state.in_flight == ()
    refunded = (*debited, TransferRefunded(transfer_id=T1, amount=10))
    given(Account, *refunded).when(lambda a: a.refund_transfer(T1, 10)).then_nothing()


def test_the_scenario_helper_fails_loudly():
    with pytest.raises(AssertionError):
        given(Account, OPENED).when(lambda a: a.withdraw(1)).then(FundsWithdrawn(amount=1))
    with pytest.raises(AssertionError):
        given(Account, OPENED).when(lambda a: a.deposit(1)).then_raises(errors.LedgerError)
    with pytest.raises(AssertionError):
        given(Account, OPENED).when(lambda a: a.deposit(1)).then(FundsDeposited(amount=2))


# -- forgetting the owner ---------------------------------------------------------------------------
def test_forgetting_the_owner_records_it_once_even_when_closed():
    given(Account, OPENED, AccountClosed()).when(lambda a: a.forget_owner()).then(AccountOwnerForgotten())
    given(Account, OPENED, AccountOwnerForgotten()).when(lambda a: a.forget_owner()).then_nothing()


def test_a_forgotten_owner_is_the_marker_readers_get_for_a_destroyed_key():
    from eventstore.personal_data import FORGOTTEN

    state = Account.evolve(Account.evolve(Account.initial_state(), OPENED), AccountOwnerForgotten())
    assert (state.owner, state.forgotten) == (FORGOTTEN, True)
