"""Console: the ledger. Accounts (search, filter, pages) and an account's entries; transfers and
their outcome; and for operators the forms that send ledger commands.

A command form posts to a view of its own. Success redirects (PRG) to the page that shows the
result with `?consistent_with=<position>`, which waits (bounded) until the read models have
applied it, so the new balance is there. A refusal (a business rule, an unknown account, a lost
race, backpressure) is shown next to the form in the API's own words: htmx swaps just that form;
without JavaScript the whole page comes back with it. Live parts re-fetch themselves on the
"accounts" and "transfers" hints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from app.console import access
from app.console.forms import CommandForm, ForgetForm, MoneyForm, OpenAccountForm, ReasonForm, TransferForm
from app.core import headers
from app.core.consistency import wait_applied
from app.core.models import Role, has_role
from app.core.threads import in_thread
from app.ledger import commands, forgetting, handlers, money, selectors
from app.ledger.commands import CommandResult
from app.ledger.domain.errors import LedgerError
from app.ledger.models import AccountSummary
from eventstore.inputs import MAX_BIGINT, parse_int
from eventstore.personal_data import FORGOTTEN

FORM_TEMPLATE = "console/command_form.html"
PAGE_SIZE = 50
ACCOUNT_READS = ["account_summary", "account_entries"]
TRANSFER_READS = ["transfers"]


# -- sending commands -------------------------------------------------------------------------
def refuse(form: forms.Form, code: str, detail: str) -> None:
    """Show a refusal next to the form: a title from the API's error code, then its detail."""
    form.refusal = {"code": code, "title": code.replace("_", " ").capitalize(), "detail": detail}  # type: ignore[attr-defined]
    form.add_error(None, detail)


def send(
    request: HttpRequest, form: CommandForm, handler: Callable[..., CommandResult], **arguments: Any
) -> CommandResult | None:
    """Send the form's command as the logged-in user (app/ledger/commands.py); None, and the form
    shows the refusal, if it was refused. The form's command id makes sending it twice harmless."""
    return sending(request, form, lambda sender: commands.send(handler, sender, **arguments))


def sending(
    request: HttpRequest, form: CommandForm, run: Callable[[commands.Sender], CommandResult]
) -> CommandResult | None:
    """`run` the form's command with the logged-in user as its sender; None if it was refused."""
    sender = commands.Sender(
        actor=request.user.get_username(),
        command_id=form.cleaned_data["command_id"],
        request_id=headers.request_id_or_none(request.headers.get("X-Request-ID")),
    )
    try:
        return run(sender)
    except commands.REFUSABLE as exc:
        answer = commands.refusal(exc)
        assert answer is not None
        detail = answer.detail
        if isinstance(exc, LedgerError) and (currency := form.currency):  # amounts said as money
            detail = exc.detail_with(lambda minor: money.format_money(minor, currency))
        refuse(form, answer.code, detail)
        return None


async def consistent(request: HttpRequest, names: list[str]) -> bool:
    """Wait (bounded) for `?consistent_with=`; True when the page may be behind the command. A
    position that is not a plain number a log position could be (say "²", or more digits than a
    bigint) is no position: nothing to wait for."""
    try:
        position = parse_int(request.GET.get("consistent_with", ""), minimum=1, maximum=MAX_BIGINT)
    except ValueError:  # not a position this console made
        return False
    return not await wait_applied(names, position)


def done(request: HttpRequest, url: str, result: CommandResult, notice: str) -> HttpResponse:
    """After a command: the page that shows its result (a whole-page redirect for htmx too), which
    waits for the read models to show it. A form sent again says so, and waits for nothing."""
    if result.outcome == "repeated":
        messages.success(request, "This form was sent before: it was done once.")
    else:
        messages.success(request, notice)
        url = f"{url}?{urlencode({'consistent_with': result.position})}"
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def form_error(
    request: HttpRequest, form: forms.Form, spec: dict[str, Any], page: Callable[[], HttpResponse]
) -> HttpResponse:
    """A refused or invalid form: just the form for htmx, else the whole page with it (200)."""
    if request.htmx:
        return render(request, FORM_TEMPLATE, {**spec, "form": form})
    return page()


def listing(request: HttpRequest, select: Callable[..., selectors.Page[Any]]) -> tuple[list[Any], dict[str, Any]]:
    """A page of rows from `?cursor=` and the context for its pager and live re-fetches. A cursor
    that is not ours gives the first page (and the page says so)."""
    cursor = request.GET.get("cursor") or None
    try:
        found, bad_cursor = select(cursor=cursor, limit=PAGE_SIZE), False
    except selectors.InvalidCursor:
        found, bad_cursor = select(cursor=None, limit=PAGE_SIZE), True
    return found.items, {
        "next_url": page_url(request, cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": page_url(request, cursor=None) if cursor else None,
        "bad_cursor": bad_cursor,
        "live_url": page_url(request),
    }


def page_url(request: HttpRequest, **changes: Any) -> str:
    """This page's URL with some query parameters changed, without `consistent_with` (for links
    and live re-fetches: nothing to wait for there)."""
    query = request.GET.copy()
    query.pop("consistent_with", None)
    for key, value in changes.items():
        query.pop(key, None)
        if value:
            query[key] = value
    return f"{request.path}?{query.urlencode()}" if query else request.path


# -- accounts ---------------------------------------------------------------------------------
def _open_spec() -> dict[str, Any]:
    return {
        "name": "open",
        "heading": "Open an account",
        "submit": "Open the account",
        "action": reverse("console:account_open"),
    }


def _accounts_page(request: HttpRequest, open_form: OpenAccountForm | None = None, stale: bool = False) -> HttpResponse:
    owner = request.GET.get("owner", "").strip()
    wanted = request.GET.get("status", "")
    wanted = wanted if wanted in selectors.STATUSES else ""
    rows, pager = listing(
        request, partial(selectors.account_list, owner=owner or None, status=wanted or None, newest_first=True)
    )
    context = {
        "title": "Accounts",
        "accounts": rows,
        "owner": owner,
        "status": wanted,
        "statuses": selectors.STATUSES,
        "stale": stale,
        **pager,
    }
    if request.htmx and request.htmx.target == "accounts-list":
        return render(request, "console/accounts.html#list", context)
    if has_role(request.user, Role.OPERATOR):
        context["open"] = {**_open_spec(), "form": open_form or OpenAccountForm(auto_id="open-%s")}
    return render(request, "console/accounts.html", {**context, "live_topics": "accounts"})


@access.viewer
async def accounts(request: HttpRequest) -> HttpResponse:
    stale = await consistent(request, ["account_summary"])
    return await in_thread(_accounts_page)(request, stale=stale)


@require_POST
@access.operator
def account_open(request: HttpRequest) -> HttpResponse:
    form = OpenAccountForm(request.POST, auto_id="open-%s")
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "command_id"}
        result = send(request, form, handlers.account_open, **data)
        if result is not None:
            url = reverse("console:account", args=[result.stream_id])
            return done(request, url, result, "Opened the account.")  # not named: flash messages outlive forgetting
    return form_error(request, form, _open_spec(), lambda: _accounts_page(request, form))


@dataclass(frozen=True)
class AccountAction:
    form: type[CommandForm]
    heading: str
    submit: str
    handler: Callable[..., CommandResult]
    notice: str  # formatted with the form's cleaned data, an amount as money
    style: str = ""
    when: tuple[str, ...] = ("open", "frozen")  # the account statuses that show the form
    fixed: dict[str, Any] = field(default_factory=dict)  # arguments beside the form's (a deposit's channel)


ACCOUNT_ACTIONS = {
    "deposit": AccountAction(
        MoneyForm, "Deposit", "Deposit", handlers.account_deposit, "Deposited {amount}.", fixed={"channel": "console"}
    ),
    "withdraw": AccountAction(MoneyForm, "Withdraw", "Withdraw", handlers.account_withdraw, "Withdrew {amount}."),
    "freeze": AccountAction(
        ReasonForm,
        "Freeze",
        "Freeze the account",
        handlers.account_freeze,
        "The account is frozen: no withdrawals or outgoing transfers.",
        style="secondary",
        when=("open",),
    ),
    "unfreeze": AccountAction(
        ReasonForm,
        "Unfreeze",
        "Unfreeze the account",
        handlers.account_unfreeze,
        "The account is open again.",
        style="secondary",
        when=("frozen",),
    ),
    "close": AccountAction(
        ReasonForm,
        "Close",
        "Close the account",
        handlers.account_close,
        "The account is closed.",
        style="danger",
    ),
}


def _action_spec(account_id: UUID, name: str) -> dict[str, Any]:
    action = ACCOUNT_ACTIONS[name]
    return {
        "name": name,
        "heading": action.heading,
        "submit": action.submit,
        "style": action.style,
        "action": reverse("console:account_action", args=[account_id, name]),
    }


def _account_page(
    request: HttpRequest, account_id: UUID, bound: tuple[str, CommandForm] | None = None, stale: bool = False
) -> HttpResponse:
    account = selectors.account_get(account_id)
    if account is None:
        context = {"title": "No such account", "account_id": account_id, "stale": stale}
        return render(request, "console/account.html", context, status=404)
    entries, pager = listing(request, partial(selectors.entry_list, account_id))
    context: dict[str, Any] = {"title": account.owner, "account": account, "entries": entries, "stale": stale, **pager}
    if request.htmx and request.htmx.target == "account-live":
        return render(request, "console/account.html#live", context)
    if has_role(request.user, Role.OPERATOR):
        context["forms"] = [
            {**_action_spec(account_id, name), "form": _form_for(name, account, bound)}
            for name, action in ACCOUNT_ACTIONS.items()
            if account.status in action.when
        ]
    if has_role(request.user, Role.ADMIN) and account.owner != FORGOTTEN:
        form = bound[1] if bound is not None and bound[0] == "forget" else ForgetForm(auto_id="forget-%s")
        context["forms"].append({**_forget_spec(account_id), "form": form})
    return render(request, "console/account.html", {**context, "live_topics": f"stream:{account_id}"})


def _forget_spec(account_id: UUID) -> dict[str, Any]:
    return {
        "name": "forget",
        "heading": "Forget the owner",
        "submit": "Forget the owner for good",
        "style": "danger",
        "action": reverse("console:account_forget", args=[account_id]),
    }


def _form_for(name: str, account: AccountSummary, bound: tuple[str, CommandForm] | None) -> CommandForm:
    if bound is not None and bound[0] == name:
        return bound[1]
    return ACCOUNT_ACTIONS[name].form(auto_id=f"{name}-%s", currency=account.currency)


@access.viewer
async def account(request: HttpRequest, account_id: UUID) -> HttpResponse:
    stale = await consistent(request, ACCOUNT_READS)
    return await in_thread(_account_page)(request, account_id, stale=stale)


@require_POST
@access.operator
def account_action(request: HttpRequest, account_id: UUID, action: str) -> HttpResponse:
    if action not in ACCOUNT_ACTIONS:
        raise Http404(f"no action {action!r}")
    spec = ACCOUNT_ACTIONS[action]
    currency = selectors.account_currency(account_id)
    form = spec.form(request.POST, auto_id=f"{action}-%s", currency=currency)
    url = reverse("console:account", args=[account_id])
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "command_id"}
        result = send(request, form, spec.handler, account_id=account_id, **data, **spec.fixed)
        if result is not None:
            if "amount" in data and currency:
                data["amount"] = money.format_money(data["amount"], currency)
            return done(request, url, result, spec.notice.format(**data))
    return form_error(
        request, form, _action_spec(account_id, action), lambda: _account_page(request, account_id, (action, form))
    )


@require_POST
@access.admin
def account_forget(request: HttpRequest, account_id: UUID) -> HttpResponse:
    """Forget the owner (app/ledger/forgetting.py) once the admin has typed the account id again."""
    form = ForgetForm(request.POST, auto_id="forget-%s", account_id=account_id)
    if form.is_valid():
        result = sending(request, form, lambda sender: forgetting.forget_owner(account_id, sender).result)
        if result is not None:
            url = reverse("console:account", args=[account_id])
            return done(request, url, result, "The owner was forgotten: their name is gone for good.")
    return form_error(
        request, form, _forget_spec(account_id), lambda: _account_page(request, account_id, ("forget", form))
    )


# -- transfers --------------------------------------------------------------------------------
def _transfer_spec() -> dict[str, Any]:
    return {
        "name": "transfer",
        "heading": "Request a transfer",
        "submit": "Request the transfer",
        "action": reverse("console:transfer_request"),
    }


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _transfers_page(request: HttpRequest, transfer_form: TransferForm | None = None) -> HttpResponse:
    wanted = request.GET.get("status", "")
    wanted = wanted if wanted in selectors.TRANSFER_STATUSES else ""
    account_filter = _uuid(request.GET.get("account"))
    rows, pager = listing(request, partial(selectors.transfer_list, status=wanted or None, account=account_filter))
    names = selectors.owners([t.from_account for t in rows] + [t.to_account for t in rows] + [account_filter])
    context: dict[str, Any] = {
        "title": "Transfers",
        "transfers": [
            {"t": t, "from_owner": names.get(t.from_account), "to_owner": names.get(t.to_account)} for t in rows
        ],
        "status": wanted,
        "statuses": selectors.TRANSFER_STATUSES,
        "account_filter": account_filter,
        "account_filter_owner": names.get(account_filter),
        **pager,
    }
    if request.htmx and request.htmx.target == "transfers-list":
        return render(request, "console/transfers.html#list", context)
    if has_role(request.user, Role.OPERATOR):
        initial = {"from_account": _uuid(request.GET.get("from"))}
        form = transfer_form or TransferForm(auto_id="transfer-%s", initial=initial)
        context["request_form"] = {**_transfer_spec(), "form": form}
    return render(request, "console/transfers.html", {**context, "live_topics": "transfers"})


@access.viewer
def transfers(request: HttpRequest) -> HttpResponse:
    return _transfers_page(request)


@require_POST
@access.operator
def transfer_request(request: HttpRequest) -> HttpResponse:
    form = TransferForm(request.POST, auto_id="transfer-%s")
    if form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "command_id"}
        result = send(request, form, handlers.transfer_request, **data)
        if result is not None:
            url = reverse("console:transfer", args=[result.stream_id])
            return done(request, url, result, "Transfer requested: it completes (or fails) in a moment.")
    return form_error(request, form, _transfer_spec(), lambda: _transfers_page(request, form))


@access.viewer
async def transfer(request: HttpRequest, transfer_id: UUID) -> HttpResponse:
    stale = await consistent(request, TRANSFER_READS)
    return await in_thread(_transfer_page)(request, transfer_id, stale)


def _transfer_page(request: HttpRequest, transfer_id: UUID, stale: bool) -> HttpResponse:
    found = selectors.transfer_get(transfer_id)
    if found is None:
        context = {"title": "No such transfer", "transfer_id": transfer_id, "stale": stale}
        return render(request, "console/transfer.html", context, status=404)
    names = selectors.owners([found.from_account, found.to_account])
    context = {
        "title": "Transfer",
        "transfer": found,
        "from_owner": names.get(found.from_account),
        "to_owner": names.get(found.to_account),
        "stale": stale,
        "live_url": page_url(request),
    }
    if request.htmx and request.htmx.target == "transfer-live":
        return render(request, "console/transfer.html#live", context)
    return render(request, "console/transfer.html", {**context, "live_topics": "transfers"})


urlpatterns = [
    path("accounts/", accounts, name="accounts"),
    path("accounts/open/", account_open, name="account_open"),
    path("accounts/<uuid:account_id>/", account, name="account"),
    path("accounts/<uuid:account_id>/forget/", account_forget, name="account_forget"),
    path("accounts/<uuid:account_id>/<str:action>/", account_action, name="account_action"),
    path("transfers/", transfers, name="transfers"),
    path("transfers/request/", transfer_request, name="transfer_request"),
    path("transfers/<uuid:transfer_id>/", transfer, name="transfer"),
]
