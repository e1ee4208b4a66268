"""The ledger's read models, written only by its projections (app/ledger/projections.py)."""

from typing import TypedDict

from django.db import models


class Digits(TypedDict):
    max_digits: int
    decimal_places: int


BALANCE: Digits = {"max_digits": 40, "decimal_places": 0}  # sums are numeric: they cannot overflow


class AccountSummary(models.Model):
    account_id = models.UUIDField(primary_key=True)
    owner = models.TextField()
    currency = models.CharField(max_length=3)
    overdraft_limit = models.BigIntegerField(default=0)
    balance = models.DecimalField(default=0, **BALANCE)
    status = models.CharField(max_length=10, default="open")
    version = models.IntegerField()
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "ledger_account"
        indexes = [models.Index(fields=["owner"]), models.Index(fields=["status"])]


class Entry(models.Model):
    account_id = models.UUIDField()
    version = models.IntegerField()
    kind = models.CharField(max_length=16)  # deposit, withdrawal, transfer_out, transfer_in, refund
    amount = models.BigIntegerField()  # signed: what the entry did to the balance
    balance_after = models.DecimalField(**BALANCE)
    reference = models.TextField(blank=True)
    transfer_id = models.UUIDField(null=True)
    position = models.BigIntegerField()
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "ledger_entry"
        constraints = [models.UniqueConstraint(fields=["account_id", "version"], name="ledger_entry_key")]


class TransferSummary(models.Model):
    transfer_id = models.UUIDField(primary_key=True)
    from_account = models.UUIDField()
    to_account = models.UUIDField()
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, default="pending")
    reason = models.CharField(max_length=32, null=True)
    version = models.IntegerField()
    requested_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "ledger_transfer"


class DailyAccountTotal(models.Model):
    """Deposits and withdrawals per account and day; totals per currency sum these rows."""

    account_id = models.UUIDField()
    day = models.DateField()
    currency = models.CharField(max_length=3)
    deposits = models.DecimalField(default=0, **BALANCE)
    withdrawals = models.DecimalField(default=0, **BALANCE)
    last_version = models.IntegerField()

    class Meta:
        db_table = "ledger_daily_account"
        constraints = [models.UniqueConstraint(fields=["account_id", "day"], name="ledger_daily_account_key")]


class DailyAccountCurrency(models.Model):
    account_id = models.UUIDField(primary_key=True)
    currency = models.CharField(max_length=3)

    class Meta:
        db_table = "ledger_daily_account_currency"
