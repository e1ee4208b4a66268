"""The ledger's projections. Every handler is an upsert guarded by the stream version, so
applying an event twice (or replaying from any point) leaves the same rows."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from uuid import UUID

from eventstore.personal_data import FORGOTTEN
from eventstore.records import RecordedEvent
from projections.base import Projection, handles, register
from projections.bulk import NULL, Table, text

CREDITS = {
    "ledger.FundsDeposited": "deposit",
    "ledger.TransferCredited": "transfer_in",
    "ledger.TransferRefunded": "refund",
}
DEBITS = {"ledger.FundsWithdrawn": "withdrawal", "ledger.TransferDebited": "transfer_out"}
MONEY = ("ledger.FundsDeposited", "ledger.FundsWithdrawn")  # what daily totals count


STATUS = {"ledger.AccountFrozen": "frozen", "ledger.AccountUnfrozen": "open", "ledger.AccountClosed": "closed"}

# Rebuilds fold a batch in memory and write each row once (Projection.rebuild_batch); they must
# leave exactly the rows the handlers below make, which verify_projections checks.
ACCOUNTS = Table("ledger_account", key=("account_id",))
ENTRIES = Table("ledger_entry", key=("account_id", "version"), skip=("id",))
TRANSFERS = Table("ledger_transfer", key=("transfer_id",))
DAILY = Table("ledger_daily_account", key=("account_id", "day"), skip=("id",))
DAILY_CURRENCY = Table("ledger_daily_account_currency", key=("account_id",))


def _delta(event: RecordedEvent) -> int:
    amount = int(event.data["amount"])
    return amount if event.type in CREDITS else -amount


@register
class AccountSummaryProjection(Projection):
    name = "account_summary"
    pipelined = True  # its handlers only write (base.Projection.pipelined)
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
        cur.execute(
            "UPDATE ledger_account SET status = coalesce(%s, status), version = %s, updated_at = %s "
            "WHERE account_id = %s AND version < %s",
            [STATUS.get(e.type), e.version, e.recorded_at, e.stream_id, e.version],
        )

    @handles("ledger.AccountOwnerForgotten")
    def forgotten(self, e: RecordedEvent, cur: Any) -> None:
        """The name goes; a replay finds FORGOTTEN in AccountOpened already (its key is gone)."""
        cur.execute(
            "UPDATE ledger_account SET owner = %s, version = %s, updated_at = %s "
            "WHERE account_id = %s AND version < %s",
            [FORGOTTEN, e.version, e.recorded_at, e.stream_id, e.version],
        )

    def rebuild_batch(self, events: list[RecordedEvent], cur: Any, memo: dict[str, Any]) -> None:
        rows = memo.setdefault("accounts", {})
        ACCOUNTS.cached(cur, rows, (e.stream_id for e in events), memo.get("complete", False))
        changed = {}
        for e in events:
            row = rows[e.stream_id]
            if e.type == "ledger.AccountOpened":
                if row is None:
                    row = rows[e.stream_id] = {
                        "account_id": e.stream_id,
                        "owner": e.data["owner"],
                        "currency": e.data["currency"],
                        "overdraft_limit": e.data.get("overdraft_limit", 0),
                        "balance": 0,
                        "status": "open",
                        "version": e.version,
                        "opened_at": e.recorded_at,
                        "updated_at": e.recorded_at,
                    }
                    changed[e.stream_id] = row
                continue
            if row is None or row["version"] >= e.version:
                continue
            if e.type in STATUS:
                row["status"] = STATUS[e.type]
            elif e.type == "ledger.AccountOwnerForgotten":
                row["owner"] = FORGOTTEN
            elif e.type != "ledger.TransferSettled":
                row["balance"] = int(row["balance"]) + _delta(e)
            row["version"], row["updated_at"] = e.version, e.recorded_at
            changed[e.stream_id] = row
        ACCOUNTS.upsert(cur, changed.values())


@register
class AccountEntriesProjection(Projection):
    name = "account_entries"
    pipelined = True  # its handlers only write (base.Projection.pipelined)
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

    def rebuild_batch(self, events: list[RecordedEvent], cur: Any, memo: dict[str, Any]) -> None:
        last = memo.setdefault("last_entry", {})  # account -> (version, balance_after) of its newest line
        missing = list({e.stream_id for e in events} - last.keys())
        if missing and not memo.get("complete"):
            cur.execute(
                "SELECT DISTINCT ON (account_id) account_id, version, balance_after FROM ledger_entry "
                "WHERE account_id = ANY(%s) ORDER BY account_id, version DESC",
                [missing],
            )
            last.update({account: (version, int(balance)) for account, version, balance in cur.fetchall()})
        lines = []
        for e in events:
            version, balance = last.get(e.stream_id, (0, 0))
            if e.version <= version:
                continue
            delta = _delta(e)
            balance += delta
            data = e.data
            transfer = data.get("transfer_id") or NULL
            lines.append(
                f"{e.stream_id}\t{e.version}\t{CREDITS.get(e.type) or DEBITS[e.type]}\t{delta}\t{balance}\t"
                f"{text(data.get('reference', ''))}\t{transfer}\t{e.position}\t{e.recorded_at.isoformat()}\n"
            )
            last[e.stream_id] = (e.version, balance)
        ENTRIES.copy(cur, lines, ENTRY_COLUMNS)


ENTRY_COLUMNS = (
    "account_id",
    "version",
    "kind",
    "amount",
    "balance_after",
    "reference",
    "transfer_id",
    "position",
    "recorded_at",
)


@register
class TransfersProjection(Projection):
    name = "transfers"
    pipelined = True  # its handlers only write (base.Projection.pipelined)
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

    def rebuild_batch(self, events: list[RecordedEvent], cur: Any, memo: dict[str, Any]) -> None:
        rows = memo.setdefault("transfers", {})
        TRANSFERS.cached(cur, rows, (e.stream_id for e in events), memo.get("complete", False))
        changed = {}
        for e in events:
            row = rows[e.stream_id]
            if e.type == "ledger.TransferRequested":
                if row is None:
                    row = rows[e.stream_id] = {
                        "transfer_id": e.stream_id,
                        "from_account": UUID(e.data["from_account"]),
                        "to_account": UUID(e.data["to_account"]),
                        "amount": e.data["amount"],
                        "currency": e.data["currency"],
                        "status": "pending",
                        "reason": None,
                        "version": e.version,
                        "requested_at": e.recorded_at,
                        "updated_at": e.recorded_at,
                    }
                    changed[e.stream_id] = row
                continue
            if row is None or row["version"] >= e.version:
                continue
            row["status"] = "completed" if e.type == "ledger.TransferCompleted" else "failed"
            row["reason"], row["version"], row["updated_at"] = e.data.get("reason"), e.version, e.recorded_at
            changed[e.stream_id] = row
        TRANSFERS.upsert(cur, changed.values())


@register
class DailyTotalsProjection(Projection):
    name = "daily_totals"
    pipelined = True  # its handlers only write (base.Projection.pipelined)
    tables = ("ledger_daily_account", "ledger_daily_account_currency")

    @handles("ledger.AccountOpened")
    def opened(self, e: RecordedEvent, cur: Any) -> None:
        cur.execute(
            "INSERT INTO ledger_daily_account_currency (account_id, currency) VALUES (%s, %s) "
            "ON CONFLICT (account_id) DO NOTHING",
            [e.stream_id, e.data["currency"]],
        )

    @handles(*MONEY)
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

    def rebuild_batch(self, events: list[RecordedEvent], cur: Any, memo: dict[str, Any]) -> None:
        currencies = memo.setdefault("currencies", {})
        DAILY_CURRENCY.cached(cur, currencies, (e.stream_id for e in events), memo.get("complete", False))
        days = memo.setdefault("days", {})
        DAILY.cached(
            cur,
            days,
            ((e.stream_id, e.recorded_at.astimezone(UTC).date()) for e in events if e.type in MONEY),
            memo.get("complete", False),
        )
        new_currencies, changed = {}, {}
        for e in events:
            if e.type == "ledger.AccountOpened":
                if currencies[e.stream_id] is None:
                    currencies[e.stream_id] = new_currencies[e.stream_id] = {
                        "account_id": e.stream_id,
                        "currency": e.data["currency"],
                    }
                continue
            known = currencies[e.stream_id]
            if known is None:
                continue
            key = (e.stream_id, e.recorded_at.astimezone(UTC).date())
            row = days[key]
            if row is None:
                row = days[key] = {
                    "account_id": e.stream_id,
                    "day": key[1],
                    "currency": known["currency"],
                    "deposits": 0,
                    "withdrawals": 0,
                    "last_version": 0,
                }
            elif row["last_version"] >= e.version:
                continue
            column = "deposits" if e.type == "ledger.FundsDeposited" else "withdrawals"
            row[column] = int(row[column]) + int(e.data["amount"])
            row["last_version"] = e.version
            changed[key] = row
        DAILY_CURRENCY.upsert(cur, new_currencies.values())
        DAILY.upsert(cur, changed.values())
