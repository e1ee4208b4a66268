"""Domain errors: one small hierarchy; each carries the API's error code."""

from __future__ import annotations

from typing import Literal


class LedgerError(Exception):
    """A business rule refused a command. `code` is the API's 422 error code."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InsufficientFunds(LedgerError):
    code: Literal["insufficient_funds"] = "insufficient_funds"  # also a transfer's failure reason


class AccountClosed(LedgerError):
    code: Literal["account_closed"] = "account_closed"  # also a transfer's failure reason


class AccountFrozen(LedgerError):
    code: Literal["account_frozen"] = "account_frozen"  # also a transfer's failure reason


class BalanceNotZero(LedgerError):
    code = "balance_not_zero"


class TransfersPending(LedgerError):
    code = "transfers_pending"


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"


class SameAccount(LedgerError):
    code = "same_account"
