"""Command endpoints (operators): parse, call one handler, answer. No business logic here.

Views are async and run the handler in a worker thread of its own (not Django's one shared
sync thread), so concurrent commands are not serialised behind each other's commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID, uuid4

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Body, Router, Schema
from pydantic import ConfigDict, Field, StringConstraints

from app.api import idempotency
from app.api.auth import Caller
from app.api.errors import ApiError
from app.api.schemas import ERRORS, AccountCommandOut, TransferCommandOut
from app.api.threads import in_thread
from app.core.models import Role
from app.ledger import handlers
from app.ledger.domain.events import MAX_AMOUNT
from app.ledger.handlers import CommandContext, CommandResult
from projections import backpressure

router = Router(tags=["commands"])

Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT, description="minor units (cents)")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class In(Schema):
    model_config = ConfigDict(extra="forbid")


class OpenAccountIn(In):
    owner: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(examples=["EUR"])
    overdraft_limit: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] = 0


class MoneyIn(In):
    amount: Amount
    reference: Text = ""


class ReasonIn(In):
    reason: Text = ""


class TransferIn(In):
    from_account: UUID
    to_account: UUID
    amount: Amount


def _if_match(request: HttpRequest) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ApiError(
            422,
            "validation_error",
            'If-Match must be a stream version, e.g. "3"',
            fields={"If-Match": ["not a version"]},
        )
    return int(value)


def _execute(
    caller: Caller,
    key: str | None,
    print_: str,
    if_match: int | None,
    request_id: str | None,
    status: int,
    call: Callable[[CommandContext], CommandResult],
    shape: Callable[[CommandResult], dict[str, Any]],
) -> tuple[int, dict[str, Any]]:
    if backpressure.too_far_behind():
        raise ApiError(
            503,
            "backpressure",
            f"the read models are more than {settings.BACKPRESSURE_MAX_LAG} events behind: retry shortly",
            headers={"Retry_After": str(settings.BACKPRESSURE_RETRY_AFTER_S)},
        )
    command_id = idempotency.command_id(caller.user.pk, key, print_) if key is not None else uuid4()
    ctx = CommandContext(
        actor=caller.user.get_username(), command_id=command_id, expected_version=if_match, request_id=request_id
    )

    def produce() -> tuple[int, dict[str, Any]]:
        return status, shape(call(ctx))

    if key is not None:
        return idempotency.run(caller.user.pk, key, print_, produce)
    return produce()


async def command(
    request: HttpRequest,
    status: int,
    call: Callable[[CommandContext], CommandResult],
    shape: Callable[[CommandResult], dict[str, Any]],
) -> HttpResponse:
    caller: Caller = request.auth  # type: ignore[attr-defined]
    caller.require(Role.OPERATOR)
    print_ = idempotency.fingerprint(request.method or "", request.path, request.body)
    status, body = await in_thread(_execute)(
        caller,
        request.headers.get("Idempotency-Key"),
        print_,
        _if_match(request),
        request.headers.get("X-Request-ID"),
        status,
        call,
        shape,
    )
    response = JsonResponse(body, status=status)
    if "version" in body:
        response["ETag"] = f'"{body["version"]}"'
    return response


def _account(result: CommandResult) -> dict[str, Any]:
    return {"account_id": str(result.stream_id), "version": result.version, "position": result.position}


def _responses(success: int, schema: type) -> dict[int, Any]:
    return {success: schema, **ERRORS}


@router.post("/accounts", response=_responses(201, AccountCommandOut), summary="Open an account")
async def open_account(request: HttpRequest, payload: OpenAccountIn) -> HttpResponse:
    account_id = uuid4()
    return await command(
        request,
        201,
        lambda ctx: handlers.account_open(
            account_id=account_id,
            owner=payload.owner,
            currency=payload.currency,
            overdraft_limit=payload.overdraft_limit,
            ctx=ctx,
        ),
        _account,
    )


def _money_endpoint(path: str, handler: Callable[..., CommandResult], summary: str) -> None:
    @router.post(
        f"/accounts/{{account_id}}/{path}",
        response=_responses(200, AccountCommandOut),
        summary=summary,
        operation_id=f"account_{path}",
    )
    async def endpoint(request: HttpRequest, account_id: UUID, payload: MoneyIn) -> HttpResponse:
        return await command(
            request,
            200,
            lambda ctx: handler(account_id=account_id, amount=payload.amount, reference=payload.reference, ctx=ctx),
            _account,
        )


_money_endpoint("deposits", handlers.account_deposit, "Deposit")
_money_endpoint("withdrawals", handlers.account_withdraw, "Withdraw (not below the overdraft limit, not when frozen)")


def _reason_endpoint(verb: str, handler: Callable[..., CommandResult], summary: str) -> None:
    @router.post(
        f"/accounts/{{account_id}}/{verb}",
        response=_responses(200, AccountCommandOut),
        summary=summary,
        operation_id=f"account_{verb}",
    )
    async def endpoint(request: HttpRequest, account_id: UUID, payload: ReasonIn | None = Body(None)) -> HttpResponse:  # noqa: B008
        reason = payload.reason if payload is not None else ""
        return await command(request, 200, lambda ctx: handler(account_id=account_id, reason=reason, ctx=ctx), _account)


_reason_endpoint("freeze", handlers.account_freeze, "Freeze an account (deposits and incoming transfers still work)")
_reason_endpoint("unfreeze", handlers.account_unfreeze, "Unfreeze an account")
_reason_endpoint("close", handlers.account_close, "Close an account (balance zero, no transfer in flight)")


@router.post("/transfers", response=_responses(202, TransferCommandOut), summary="Request a transfer")
async def request_transfer(request: HttpRequest, payload: TransferIn) -> HttpResponse:
    transfer_id = uuid4()
    return await command(
        request,
        202,
        lambda ctx: handlers.transfer_request(
            transfer_id=transfer_id,
            from_account=payload.from_account,
            to_account=payload.to_account,
            amount=payload.amount,
            ctx=ctx,
        ),
        lambda r: {"transfer_id": str(r.stream_id), "position": r.position},
    )
