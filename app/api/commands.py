"""Command endpoints (operators): parse, send one command (app/ledger/commands.py), answer. No
business logic here; refusals are answered by app/api/errors.py from the commands' one table.

Views are async and send the command from a worker thread of its own (not Django's one shared
sync thread), so concurrent commands are not serialised behind each other's commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Body, Router, Schema
from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from app.api.auth import BearerToken, Caller
from app.api.errors import ApiError
from app.api.schemas import ERRORS, AccountCommandOut, ForgetOut, Number, TransferCommandOut
from app.core import headers, idempotency
from app.core.models import Role
from app.core.threads import in_thread
from app.ledger import commands, forgetting, handlers
from app.ledger.commands import CommandResult
from app.ledger.domain.events import MAX_AMOUNT, OWNER_MAX, TEXT_MAX, Currency
from eventstore.inputs import storable

router = Router(tags=["commands"])
Shape = Callable[[CommandResult], dict[str, Any]]

Amount = Annotated[Number, Field(gt=0, le=MAX_AMOUNT, description="minor units (cents)")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=TEXT_MAX), AfterValidator(storable)]
Owner = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=OWNER_MAX), AfterValidator(storable)
]


class OperatorToken(BearerToken):
    """An operator's bearer token. Checked (like any auth) before the body is parsed, so a viewer
    sending a command is refused 403 whatever the body holds, and its body is never parsed."""

    async def __call__(self, request: HttpRequest) -> Caller | None:
        caller = await super().__call__(request)
        if caller is not None:
            caller.require(Role.OPERATOR)
        return caller


operator_only = OperatorToken()


class AdminToken(BearerToken):
    """An admin's bearer token (forgetting a person), checked as OperatorToken is."""

    async def __call__(self, request: HttpRequest) -> Caller | None:
        caller = await super().__call__(request)
        if caller is not None:
            caller.require(Role.ADMIN)
        return caller


admin_only = AdminToken()


class In(Schema):
    model_config = ConfigDict(extra="forbid")


class OpenAccountIn(In):
    owner: Owner
    currency: Currency = Field(examples=["EUR"], description="ISO 4217, a currency in use")
    overdraft_limit: Annotated[Number, Field(ge=0, le=MAX_AMOUNT)] = 0


class MoneyIn(In):
    amount: Amount
    reference: Text = ""


class ReasonIn(In):
    reason: Text = ""


class TransferIn(In):
    from_account: UUID
    to_account: UUID
    amount: Amount


def _sender(request: HttpRequest, caller: Caller) -> commands.Sender:
    """The command's sender, its headers parsed (a bad one is 422 naming it)."""
    get = request.headers.get
    try:
        return commands.Sender(
            actor=caller.user.get_username(),
            user_id=caller.user.pk,
            idempotency_key=headers.idempotency_key(get("Idempotency-Key")),
            fingerprint=idempotency.fingerprint(request.method or "", request.path, request.body),
            expected_version=headers.expected_version(get("If-Match")),
            request_id=headers.request_id(get("X-Request-ID")),
        )
    except headers.BadHeader as exc:
        raise ApiError(422, "validation_error", f"{exc.header}: {exc}", fields={exc.header: [str(exc)]}) from None


async def command(
    request: HttpRequest, status: int, handler: Callable[..., CommandResult], shape: Shape, **arguments: Any
) -> HttpResponse:
    """Send one command as the caller (an operator) and answer with `shape` of its result."""
    caller: Caller = request.auth  # type: ignore[attr-defined]  # set by ninja once BearerToken accepts
    caller.require(Role.OPERATOR)  # operator_only did already; kept for any route that forgets it
    sender = _sender(request, caller)
    body = shape(await in_thread(commands.send)(handler, sender, **arguments))
    response = JsonResponse(body, status=status)
    if "version" in body:
        response["ETag"] = f'"{body["version"]}"'
    return response


def _account(result: CommandResult) -> dict[str, Any]:
    return {"account_id": str(result.stream_id), "version": result.version, "position": result.position}


def _transfer(result: CommandResult) -> dict[str, Any]:
    return {"transfer_id": str(result.stream_id), "position": result.position}


def _responses(success: int, schema: type) -> dict[int, Any]:
    return {success: schema, **ERRORS}


@router.post("/accounts", response=_responses(201, AccountCommandOut), summary="Open an account", auth=operator_only)
async def open_account(request: HttpRequest, payload: OpenAccountIn) -> HttpResponse:
    return await command(request, 201, handlers.account_open, _account, **payload.model_dump())


def _money_endpoint(path: str, handler: Callable[..., CommandResult], summary: str, **fixed: Any) -> None:
    """`fixed`: arguments the handler always gets from this endpoint (a deposit's channel)."""

    @router.post(
        f"/accounts/{{account_id}}/{path}",
        response=_responses(200, AccountCommandOut),
        summary=summary,
        operation_id=f"account_{path}",
        auth=operator_only,
    )
    async def endpoint(request: HttpRequest, account_id: UUID, payload: MoneyIn) -> HttpResponse:
        arguments = {**payload.model_dump(), **fixed}
        return await command(request, 200, handler, _account, account_id=account_id, **arguments)


_money_endpoint("deposits", handlers.account_deposit, "Deposit", channel="api")
_money_endpoint("withdrawals", handlers.account_withdraw, "Withdraw (not below the overdraft limit, not when frozen)")


def _reason_endpoint(verb: str, handler: Callable[..., CommandResult], summary: str) -> None:
    @router.post(
        f"/accounts/{{account_id}}/{verb}",
        response=_responses(200, AccountCommandOut),
        summary=summary,
        operation_id=f"account_{verb}",
        auth=operator_only,
    )
    async def endpoint(request: HttpRequest, account_id: UUID, payload: ReasonIn | None = Body(None)) -> HttpResponse:  # noqa: B008
        reason = payload.reason if payload is not None else ""
        return await command(request, 200, handler, _account, account_id=account_id, reason=reason)


_reason_endpoint("freeze", handlers.account_freeze, "Freeze an account (deposits and incoming transfers still work)")
_reason_endpoint("unfreeze", handlers.account_unfreeze, "Unfreeze an account")
_reason_endpoint("close", handlers.account_close, "Close an account (balance zero, no transfer in flight)")


@router.post(
    "/transfers", response=_responses(202, TransferCommandOut), summary="Request a transfer", auth=operator_only
)
async def request_transfer(request: HttpRequest, payload: TransferIn) -> HttpResponse:
    return await command(request, 202, handlers.transfer_request, _transfer, **payload.model_dump())


@router.post(
    "/accounts/{account_id}/forget",
    response=_responses(200, ForgetOut),
    summary="Forget the account's owner (admin): the name goes from the log, read models, snapshots and caches",
    operation_id="account_forget",
    auth=admin_only,
)
async def forget_owner(request: HttpRequest, account_id: UUID) -> HttpResponse:
    """200 again when the owner was forgotten before (`already_forgotten`): the key is destroyed
    again, nothing is appended."""
    caller: Caller = request.auth  # type: ignore[attr-defined]
    caller.require(Role.ADMIN)
    done = await in_thread(forgetting.forget_owner)(account_id, _sender(request, caller))
    body = {**_account(done.result), "already_forgotten": done.already}
    response = JsonResponse(body, status=200)
    response["ETag"] = f'"{done.result.version}"'
    return response
