"""The ledger's read models in Django's admin, read-only (app/core/admin.py says why)."""

from __future__ import annotations

from django.contrib import admin

from app.core.admin import ReadOnlyAdmin
from app.ledger.models import AccountSummary, DailyAccountTotal, Entry, TransferSummary


@admin.register(AccountSummary)
class AccountSummaryAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "owner", "currency", "balance", "status", "version", "updated_at")
    list_filter = ("status", "currency")
    search_fields = ("owner",)
    ordering = ("owner",)  # indexed


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "version", "kind", "amount", "balance_after", "recorded_at")
    list_filter = ("kind",)
    ordering = ("-id",)  # newest first, by the primary key


@admin.register(TransferSummary)
class TransferSummaryAdmin(ReadOnlyAdmin):
    list_display = ("transfer_id", "from_account", "to_account", "amount", "currency", "status", "reason")
    list_filter = ("status",)


@admin.register(DailyAccountTotal)
class DailyAccountTotalAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "day", "currency", "deposits", "withdrawals")
    ordering = ("-id",)
