"""Domain errors: one small hierarchy; each carries the API's error code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal


class LedgerError(Exception):
    """A business rule refused a command. `code` is the API's 422 error code."""

    code = "ledger_error"

    def __init__(self, detail: str, **amounts: int) -> None:
        """`detail` may name `amounts` ("{balance}"), integers in minor units: the API says them as
        numbers, the console as money (`detail_with`)."""
        self.template, self.amounts = detail, amounts
        self.detail = detail.format(**amounts) if amounts else detail
        super().__init__(self.detail)

    def detail_with(self, show: Callable[[int], str]) -> str:
        """The detail with each amount shown by `show` (say, as "1,310.66 EUR")."""
        if not self.amounts:
            return self.detail
        return self.template.format(**{name: show(value) for name, value in self.amounts.items()})


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
