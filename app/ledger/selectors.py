"""Reads of the ledger's read models: the selectors shared by the REST API and the console, so
that both list, filter and page the same way (and a query is written once).

Pages use opaque keyset cursors (never offsets): a page that follows a cursor neither skips nor
repeats a row while rows are added.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from django.db.models import Q

from app.ledger.commands import NotFound, load
from app.ledger.domain.account import Account
from app.ledger.models import AccountSummary, Entry, TransferSummary
from eventstore.inputs import MAX_INT, parse_int, text_problem

T = TypeVar("T")
PAGE_SIZE = 50
STATUSES = ("open", "frozen", "closed")
TRANSFER_STATUSES = ("pending", "completed", "failed")


class InvalidCursor(ValueError):
    """A cursor this module did not make."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != n:
        raise InvalidCursor("not a cursor from this page")
    return parts


def _time_and_id(cursor: str) -> tuple[datetime, UUID]:
    at, id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(at), UUID(id)
    except ValueError:
        raise InvalidCursor("not a cursor from this page") from None


def _page(rows: Any, limit: int, key: Any) -> Page[Any]:
    items = list(rows[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Page(items, encode_cursor(*key(items[-1])) if more and items else None)


def account_get(account_id: UUID) -> AccountSummary | None:
    return AccountSummary.objects.filter(account_id=account_id).first()


def account_currency(account_id: UUID) -> str | None:
    """An account's currency (it never changes): from the read model, or from the log for an
    account opened a moment ago that the read model does not show yet; None for no account."""
    found = AccountSummary.objects.filter(account_id=account_id).values_list("currency", flat=True).first()
    if found is not None:
        return found
    try:
        return load(Account, account_id).state.currency
    except NotFound:
        return None


def account_list(
    *,
    owner: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
    newest_first: bool = False,
) -> Page[AccountSummary]:
    """Accounts by opening time (oldest first, or newest); `owner` matches any part of the name, any case."""
    rows = AccountSummary.objects.order_by(
        *(("-opened_at", "-account_id") if newest_first else ("opened_at", "account_id"))
    )
    if owner:
        if text_problem(owner):  # no owner holds a NUL or a lone surrogate: PostgreSQL could not take it
            return Page([], None)
        rows = rows.filter(owner__icontains=owner)
    if status:
        rows = rows.filter(status=status)
    if cursor:
        opened, account = _time_and_id(cursor)
        where = "(opened_at, account_id) < (%s, %s)" if newest_first else "(opened_at, account_id) > (%s, %s)"
        rows = rows.extra(where=[where], params=[opened, account])
    return _page(rows, limit, lambda a: (a.opened_at.isoformat(), a.account_id))


def owners(account_ids: Iterable[UUID | None]) -> dict[UUID, str]:
    """The owner of each account (for lists that show accounts by name)."""
    wanted = {a for a in account_ids if a is not None}
    return dict(AccountSummary.objects.filter(account_id__in=wanted).values_list("account_id", "owner"))


def entry_list(account_id: UUID, *, cursor: str | None = None, limit: int = PAGE_SIZE) -> Page[Entry]:
    """An account's ledger lines, newest first."""
    rows = Entry.objects.filter(account_id=account_id).order_by("-version")
    if cursor:
        (before,) = decode_cursor(cursor, 1)
        try:
            rows = rows.filter(version__lt=parse_int(before, maximum=MAX_INT))
        except ValueError:
            raise InvalidCursor("not a cursor from this page") from None
    return _page(rows, limit, lambda e: (e.version,))


def transfer_get(transfer_id: UUID) -> TransferSummary | None:
    return TransferSummary.objects.filter(transfer_id=transfer_id).first()


def transfer_list(
    *, status: str | None = None, account: UUID | None = None, cursor: str | None = None, limit: int = PAGE_SIZE
) -> Page[TransferSummary]:
    """Transfers newest first; `account` matches either side."""
    rows = TransferSummary.objects.order_by("-requested_at", "-transfer_id")
    if status:
        rows = rows.filter(status=status)
    if account:
        rows = rows.filter(Q(from_account=account) | Q(to_account=account))
    if cursor:
        requested, transfer = _time_and_id(cursor)
        rows = rows.extra(where=["(requested_at, transfer_id) < (%s, %s)"], params=[requested, transfer])
    return _page(rows, limit, lambda t: (t.requested_at.isoformat(), t.transfer_id))
