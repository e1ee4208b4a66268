"""Domain errors: one small hierarchy; each carries the API's error code."""

from __future__ import annotations


class LedgerError(Exception):
    """A business rule refused a command. `code` is the API's 422 error code."""

    code = "ledger_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class AccountClosed(LedgerError):
    code = "account_closed"


class AccountFrozen(LedgerError):
    code = "account_frozen"


class BalanceNotZero(LedgerError):
    code = "balance_not_zero"


class TransfersPending(LedgerError):
    code = "transfers_pending"


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"


class SameAccount(LedgerError):
    code = "same_account"
