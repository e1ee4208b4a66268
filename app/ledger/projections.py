"""The ledger's projections. Every handler is an upsert guarded by the stream version, so
applying an event twice (or replaying from any point) leaves the same rows."""

from __future__ import annotations

from typing import Any

from eventstore.records import RecordedEvent
from projections.base import Projection, handles, register

CREDITS = {
    "ledger.FundsDeposited": "deposit",
    "ledger.TransferCredited": "transfer_in",
    "ledger.TransferRefunded": "refund",
}
DEBITS = {"ledger.FundsWithdrawn": "withdrawal", "ledger.TransferDebited": "transfer_out"}


def _delta(event: RecordedEvent) -> int:
    amount = int(event.data["amount"])
    return amount if event.type in CREDITS else -amount


@register
class AccountSummaryProjection(Projection):
    name = "account_summary"
    tables = ("ledger_account",)

    @handles("ledger.AccountOpened")
    def opened(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "INSERT INTO ledger_account (account_id, owner, currency, overdraft_limit, balance, status, version, "
            "opened_at, updated_at) VALUES (%s, %s, %s, %s, 0, 'open', %s, %s, %s) "
            "ON CONFLICT (account_id) DO NOTHING",
            [
                e.stream_id,
                e.data["owner"],
                e.data["currency"],
                e.data.get("overdraft_limit", 0),
                e.version,
                e.recorded_at,
                e.recorded_at,
            ],
        )

    @handles(*CREDITS, *DEBITS)
    def money(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "UPDATE ledger_account SET balance = balance + %s, version = %s, updated_at = %s "
            "WHERE account_id = %s AND version < %s",
            [_delta(e), e.version, e.recorded_at, e.stream_id, e.version],
        )

    @handles("ledger.AccountFrozen", "ledger.AccountUnfrozen", "ledger.AccountClosed", "ledger.TransferSettled")
    def status(self, e: RecordedEvent, cur: Any) -> None:
        status = {"ledger.AccountFrozen": "frozen", "ledger.AccountUnfrozen": "open", "ledger.AccountClosed": "closed"}
        cur.execute(
            "UPDATE ledger_account SET status = coalesce(%s, status), version = %s, updated_at = %s "
            "WHERE account_id = %s AND version < %s",
            [status.get(e.type), e.version, e.recorded_at, e.stream_id, e.version],
        )


@register
class AccountEntriesProjection(Projection):
    name = "account_entries"
    tables = ("ledger_entry",)

    @handles(*CREDITS, *DEBITS)
    def entry(self, e: RecordedEvent, cur: Any) -> None:
        delta = _delta(e)
        cur.execute(
            "INSERT INTO ledger_entry (account_id, version, kind, amount, balance_after, reference, transfer_id, "
            "position, recorded_at) SELECT %s, %s, %s, %s, coalesce((SELECT balance_after FROM ledger_entry "
            "WHERE account_id = %s AND version < %s ORDER BY version DESC LIMIT 1), 0) + %s, %s, %s, %s, %s "
            "ON CONFLICT (account_id, version) DO NOTHING",
            [
                e.stream_id,
                e.version,
                CREDITS.get(e.type) or DEBITS[e.type],
                delta,
                e.stream_id,
                e.version,
                delta,
                e.data.get("reference", ""),
                e.data.get("transfer_id"),
                e.position,
                e.recorded_at,
            ],
        )


@register
class TransfersProjection(Projection):
    name = "transfers"
    tables = ("ledger_transfer",)

    @handles("ledger.TransferRequested")
    def requested(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "INSERT INTO ledger_transfer (transfer_id, from_account, to_account, amount, currency, status, version, "
            "requested_at, updated_at) VALUES (%s, %s, %s, %s, %s, 'pending', %s, %s, %s) "
            "ON CONFLICT (transfer_id) DO NOTHING",
            [
                e.stream_id,
                e.data["from_account"],
                e.data["to_account"],
                e.data["amount"],
                e.data["currency"],
                e.version,
                e.recorded_at,
                e.recorded_at,
            ],
        )

    @handles("ledger.TransferCompleted", "ledger.TransferFailed")
    def ended(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "UPDATE ledger_transfer SET status = %s, reason = %s, version = %s, updated_at = %s "
            "WHERE transfer_id = %s AND version < %s",
            [
                "completed" if e.type == "ledger.TransferCompleted" else "failed",
                e.data.get("reason"),
                e.version,
                e.recorded_at,
                e.stream_id,
                e.version,
            ],
        )


@register
class DailyTotalsProjection(Projection):
    name = "daily_totals"
    tables = ("ledger_daily_account", "ledger_daily_account_currency")

    @handles("ledger.AccountOpened")
    def opened(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "INSERT INTO ledger_daily_account_currency (account_id, currency) VALUES (%s, %s) "
            "ON CONFLICT (account_id) DO NOTHING",
            [e.stream_id, e.data["currency"]],
        )

    @handles("ledger.FundsDeposited", "ledger.FundsWithdrawn")
    def money(self, e: RecordedEvent, cur: Any) -> None:
        deposit = e.type == "ledger.FundsDeposited"
        amount = int(e.data["amount"])
        cur.execute(
            "INSERT INTO ledger_daily_account AS d (account_id, day, currency, deposits, withdrawals, last_version) "
            "SELECT %s, (%s AT TIME ZONE 'UTC')::date, c.currency, %s, %s, %s "
            "FROM ledger_daily_account_currency c WHERE c.account_id = %s "
            "ON CONFLICT (account_id, day) DO UPDATE SET deposits = d.deposits + EXCLUDED.deposits, "
            "withdrawals = d.withdrawals + EXCLUDED.withdrawals, last_version = EXCLUDED.last_version "
            "WHERE d.last_version < EXCLUDED.last_version",
            [e.stream_id, e.recorded_at, amount if deposit else 0, 0 if deposit else amount, e.version, e.stream_id],
        )
