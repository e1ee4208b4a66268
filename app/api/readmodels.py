"""Read-model queries (viewers) with read-your-writes, and projection controls (operators)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Body, Query, Router, Schema
from ninja.responses import Status
from pydantic import Field

from app.api import commands
from app.api.auth import Caller
from app.api.commands import operator_only
from app.api.errors import ApiError
from app.api.schemas import ERRORS, READ_ERRORS, Number, Position, QueryText
from app.core.consistency import wait_applied
from app.core.models import Role
from app.core.threads import in_thread
from app.ledger import selectors
from app.ledger.models import AccountSummary
from eventstore.inputs import MAX_BIGINT
from projections import rebuild
from projections import status as projection_status
from projections.base import projection_registry
from projections.processes import process_registry

router = Router(tags=["read models"])


async def consistent(names: list[str], position: int | None) -> dict[str, Any]:
    """Wait (bounded) until the projections read have applied the event at `position`."""
    if position is None:
        return {}
    return {"stale": not await wait_applied(names, position)}


def _account_json(a: AccountSummary) -> dict[str, Any]:
    return {
        "account_id": str(a.account_id),
        "owner": a.owner,
        "currency": a.currency,
        "balance": int(a.balance),
        "status": a.status,
        "version": a.version,
    }


@contextmanager
def _cursor_errors() -> Iterator[None]:
    try:
        yield
    except selectors.InvalidCursor:
        raise ApiError(422, "validation_error", "not a cursor from this API", fields={"cursor": ["invalid"]}) from None


class ConsistentQuery(Schema):
    consistent_with: Position | None = None


class AccountsQuery(ConsistentQuery):
    owner: QueryText | None = None
    status: str | None = Field(None, pattern="^(open|frozen|closed)$")
    cursor: QueryText | None = None
    limit: Number = Field(50, ge=1, le=500)


# GET /accounts shares its path with POST /accounts, so it lives on the same router.
@commands.router.get("/accounts", response={200: dict, **READ_ERRORS}, summary="Accounts, filtered, by opening time")
async def accounts(request: HttpRequest, q: Query[AccountsQuery]) -> dict[str, Any]:
    meta = await consistent(["account_summary"], q.consistent_with)

    def page() -> dict[str, Any]:
        with _cursor_errors():
            found = selectors.account_list(owner=q.owner, status=q.status, cursor=q.cursor, limit=q.limit)
        return {"items": [_account_json(a) for a in found.items], "next_cursor": found.next_cursor}

    return {**await in_thread(page)(), **meta}


@router.get("/accounts/{account_id}", response={200: dict, **READ_ERRORS}, summary="One account")
async def account(request: HttpRequest, account_id: UUID, q: Query[ConsistentQuery]) -> dict[str, Any]:
    meta = await consistent(["account_summary"], q.consistent_with)
    found = await in_thread(selectors.account_get)(account_id)
    if found is None:
        raise ApiError(404, "not_found", f"no account {account_id}" + (" (yet)" if meta.get("stale") else ""))
    return {**_account_json(found), **meta}


class EntriesQuery(ConsistentQuery):
    cursor: QueryText | None = None
    limit: Number = Field(50, ge=1, le=500)


@router.get("/accounts/{account_id}/entries", response={200: dict, **READ_ERRORS}, summary="Ledger lines")
async def entries(request: HttpRequest, account_id: UUID, q: Query[EntriesQuery]) -> dict[str, Any]:
    meta = await consistent(["account_entries", "account_summary"], q.consistent_with)

    def page() -> dict[str, Any]:
        if selectors.account_get(account_id) is None:
            raise ApiError(404, "not_found", f"no account {account_id}")
        with _cursor_errors():
            found = selectors.entry_list(account_id, cursor=q.cursor, limit=q.limit)
        return {
            "items": [
                {
                    "version": e.version,
                    "kind": e.kind,
                    "amount": e.amount,
                    "balance_after": int(e.balance_after),
                    "reference": e.reference,
                    "transfer_id": str(e.transfer_id) if e.transfer_id else None,
                    "position": e.position,
                    "recorded_at": e.recorded_at.isoformat(),
                }
                for e in found.items
            ],
            "next_cursor": found.next_cursor,
        }

    return {**await in_thread(page)(), **meta}


@router.get("/transfers/{transfer_id}", response={200: dict, **READ_ERRORS}, summary="One transfer")
async def transfer(request: HttpRequest, transfer_id: UUID, q: Query[ConsistentQuery]) -> dict[str, Any]:
    meta = await consistent(["transfers"], q.consistent_with)
    found = await in_thread(selectors.transfer_get)(transfer_id)
    if found is None:
        raise ApiError(404, "not_found", f"no transfer {transfer_id}")
    body: dict[str, Any] = {
        "transfer_id": str(found.transfer_id),
        "status": found.status,
        "from_account": str(found.from_account),
        "to_account": str(found.to_account),
        "amount": found.amount,
    }
    if found.reason:
        body["reason"] = found.reason
    return {**body, **meta}


# -- projections -------------------------------------------------------------------------------
@router.get("/projections", response={200: list[dict], **READ_ERRORS}, summary="Every projection's status")
async def projection_list(request: HttpRequest) -> list[dict[str, Any]]:
    return await in_thread(projection_status.overview)()


def _control(request: HttpRequest, name: str, *, processes_too: bool = False) -> Caller:
    """The caller, if an operator naming a projection (or, for pause, resume, retry and skip, a
    process manager: those are never reset or rebuilt)."""
    caller: Caller = request.auth  # type: ignore[attr-defined]  # set by ninja once BearerToken accepts
    caller.require(Role.OPERATOR)
    if name in process_registry and not processes_too:
        raise ApiError(409, "not_rebuildable", f"{name} is a process manager: it is never reset or rebuilt")
    if name not in projection_registry and name not in process_registry:
        raise ApiError(404, "not_found", f"no projection {name!r}")
    return caller


@router.post("/projections/{name}/pause", response={200: dict, **ERRORS}, auth=operator_only)
async def pause(request: HttpRequest, name: str) -> dict[str, Any]:
    _control(request, name, processes_too=True)
    await in_thread(projection_status.set_paused)(name, True)
    return {"name": name, "status": "paused"}


@router.post("/projections/{name}/resume", response={200: dict, **ERRORS}, auth=operator_only)
async def resume(request: HttpRequest, name: str) -> dict[str, Any]:
    _control(request, name, processes_too=True)
    await in_thread(projection_status.set_paused)(name, False)
    return {"name": name, "status": "running"}


@router.post("/projections/{name}/retry", response={200: dict, **ERRORS}, auth=operator_only)
async def retry(request: HttpRequest, name: str) -> dict[str, Any]:
    _control(request, name, processes_too=True)
    count = await in_thread(projection_status.retry)(name)
    return {"name": name, "retried_buckets": count}


@router.post("/projections/{name}/skip", response={200: dict, **ERRORS}, auth=operator_only)
async def skip(request: HttpRequest, name: str) -> dict[str, Any]:
    caller = _control(request, name, processes_too=True)
    skipped = await in_thread(projection_status.skip)(name, caller.user)
    return {"name": name, "skipped_events": skipped}


class ResetIn(Schema):
    to: Number = Field(ge=0, le=MAX_BIGINT)


@router.post("/projections/{name}/reset", response={200: dict, **ERRORS}, auth=operator_only)
async def reset(request: HttpRequest, name: str, payload: ResetIn = Body(...)) -> dict[str, Any]:  # noqa: B008
    _control(request, name)
    try:
        await in_thread(projection_status.reset)(name, payload.to)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc), fields={"to": ["no event there"]}) from None
    return {"name": name, "reset_to": payload.to}


@router.post("/projections/{name}/rebuild", response={202: dict, **ERRORS}, auth=operator_only)
async def start_rebuild(request: HttpRequest, name: str) -> Status:
    """Build the projection's next tables from position zero while the current ones serve;
    progress shows in GET /api/projections."""
    caller = _control(request, name)
    try:
        job = await in_thread(rebuild.start)(name, reason="api", user=caller.user)
    except rebuild.NotRebuildable as exc:
        raise ApiError(409, "not_rebuildable", str(exc)) from None
    return Status(202, {"name": name, "status": "rebuilding", "rebuild": job.progress()})
