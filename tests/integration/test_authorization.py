"""Who may do what, everywhere: every API operation, /metrics, every console page and action, and the live
socket, for anonymous, viewer, operator and admin, with the status each gets.

The API's list of operations comes from /api/openapi.json, and the console's from the URLconf (every
`console:` URL name), so an endpoint or a console view added without a row here fails the test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from app.console.routing import websocket_application
from app.core.models import ApiToken, role_set
from app.integration import dead_letters, subscriptions
from app.integration.messages import Received
from app.ledger import handlers
from app.ledger.commands import CommandContext
from projections import rebuild, runner
from tests.integration.api.conftest import Api

ROLES = ("anonymous", "viewer", "operator", "admin")
NOT_LOGGED_IN = "login"  # the console sends anonymous users to its login page


@dataclass
class World:
    """What the requests act on: fresh accounts (one to close, with a zero balance), a transfer,
    and an event, all applied to the read models."""

    account: UUID
    empty: UUID
    other: UUID
    transfer: UUID
    event: UUID


def make_world() -> World:
    def ctx() -> CommandContext:
        return CommandContext(actor="matrix")

    account = handlers.account_open(owner="Matt Rix", currency="EUR", ctx=ctx()).stream_id
    handlers.account_deposit(account_id=account, amount=100, ctx=ctx())
    empty = handlers.account_open(owner="Em Pty", currency="EUR", ctx=ctx()).stream_id
    other = handlers.account_open(owner="O. Ther", currency="EUR", ctx=ctx()).stream_id
    transfer = handlers.transfer_request(from_account=account, to_account=other, amount=1, ctx=ctx())
    for bucket in range(64):
        while runner.catch_up(bucket).get("account_summary") == "more":
            pass
    from eventstore.store import EventStore

    [first] = EventStore().read_stream(account, limit=1)
    return World(account, empty, other, transfer.stream_id, first.event_id)


def user(role: str) -> Any:
    found, _ = get_user_model().objects.get_or_create(username=f"matrix-{role}")
    role_set(found, role)
    return found


# -- the REST API -----------------------------------------------------------------------------
# method, OpenAPI path, body, and the status per role (anonymous, viewer, operator, admin).
READ = (401, 200, 200, 200)
COMMAND = (401, 403, 200, 200)
API: list[tuple[str, str, Callable[[World], Any], tuple[int, ...]]] = [
    ("GET", "/api/accounts", lambda w: None, READ),
    ("GET", "/api/accounts/{account_id}", lambda w: None, READ),
    ("GET", "/api/accounts/{account_id}/entries", lambda w: None, READ),
    ("GET", "/api/transfers/{transfer_id}", lambda w: None, READ),
    ("GET", "/api/streams/{stream_id}/events", lambda w: None, READ),
    ("GET", "/api/events", lambda w: None, READ),
    ("GET", "/api/aggregates/{category}/{stream_id}/state", lambda w: None, READ),
    ("GET", "/api/event-types", lambda w: None, READ),
    ("GET", "/api/projections", lambda w: None, READ),
    ("POST", "/api/accounts", lambda w: {"owner": "New", "currency": "EUR"}, (401, 403, 201, 201)),
    ("POST", "/api/accounts/{account_id}/deposits", lambda w: {"amount": 5}, COMMAND),
    ("POST", "/api/accounts/{account_id}/withdrawals", lambda w: {"amount": 5}, COMMAND),
    ("POST", "/api/accounts/{account_id}/freeze", lambda w: {}, COMMAND),
    ("POST", "/api/accounts/{account_id}/unfreeze", lambda w: {}, COMMAND),
    ("POST", "/api/accounts/{account_id}/close", lambda w: {}, COMMAND),
    ("POST", "/api/accounts/{account_id}/forget", lambda w: None, (401, 403, 403, 200)),
    (
        "POST",
        "/api/transfers",
        lambda w: {"from_account": str(w.account), "to_account": str(w.other), "amount": 1},
        (401, 403, 202, 202),
    ),
    ("POST", "/api/projections/{name}/pause", lambda w: {}, COMMAND),
    ("POST", "/api/projections/{name}/resume", lambda w: {}, COMMAND),
    ("POST", "/api/projections/{name}/retry", lambda w: {}, COMMAND),
    ("POST", "/api/projections/{name}/skip", lambda w: {}, COMMAND),
    ("POST", "/api/projections/{name}/reset", lambda w: {"to": 0}, COMMAND),
    ("POST", "/api/projections/{name}/rebuild", lambda w: {}, (401, 403, 202, 202)),
    ("GET", "/api/events/live", lambda w: None, READ),
    ("POST", "/api/subscriptions", lambda w: {"name": f"matrix-{uuid4().hex[:8]}"}, (401, 403, 201, 201)),
    ("GET", "/api/subscriptions", lambda w: None, READ),
    ("GET", "/api/subscriptions/{name}", lambda w: None, READ),
    ("DELETE", "/api/subscriptions/{name}", lambda w: None, (401, 403, 204, 204)),
    ("GET", "/api/subscriptions/{name}/events", lambda w: None, READ),
    ("POST", "/api/subscriptions/{name}/ack", lambda w: {"consumer": "matrix", "positions": {}}, READ),
]


def api_path(template: str, world: World) -> str:
    account = world.empty if template.endswith("/close") else world.account
    return template.format(
        account_id=account,
        transfer_id=world.transfer,
        stream_id=world.account,
        category="account",
        name="daily_totals",
    ) + ("?consumer=matrix" if template.endswith("/events") and "{name}" in template else "")


def test_the_matrix_names_every_operation_the_api_serves(transactional_db):
    schema = Client().get("/api/openapi.json").json()
    served = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert served == {(method, path) for method, path, _, _ in API}


@pytest.fixture
def no_rebuild_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild is recorded, not run: no worker here."""
    monkeypatch.setattr(rebuild, "enqueue", lambda job: None)


@pytest.mark.parametrize(("method", "template", "body", "expected"), API, ids=[f"{m} {p}" for m, p, _, _ in API])
def test_each_api_operation_for_each_role(transactional_db, no_rebuild_runs, method, template, body, expected):
    world = make_world()
    for role, status in zip(ROLES, expected, strict=True):
        world.empty = handlers.account_open(owner="Em Pty", currency="EUR", ctx=CommandContext(actor="m")).stream_id
        token = None if role == "anonymous" else ApiToken.issue(user(role))[1]
        api = Api(token)
        path = api_path(template, world)
        if "/api/subscriptions/" in template:  # the one its name names (a DELETE for a role before took it)
            with contextlib.suppress(subscriptions.SubscriptionExists):
                subscriptions.subscription_create(name="daily_totals")
        if method == "DELETE":
            response = api.client.delete(path, **api._headers({}))
        else:
            response = api.get(path) if method == "GET" else api.post(path, body(world))
        assert response.status_code == status, f"{role}: {method} {path} -> {response.status_code} {response.content!r}"
        if status >= 400:
            assert set(response.json()) >= {"error", "detail"}
        if status < 300 and method == "POST" and "/projections/" in path:
            Api(ApiToken.issue(user("admin"))[1]).post(api_path("/api/projections/{name}/resume", world), {})


# -- /metrics (outside /api/, not in the OpenAPI document) -------------------------------------------
@pytest.mark.parametrize(("role", "status"), zip(ROLES, READ, strict=True))
def test_metrics_for_each_role(transactional_db, role, status):
    token = None if role == "anonymous" else ApiToken.issue(user(role))[1]
    response = Api(token).get("/metrics")
    assert response.status_code == status, f"{role}: GET /metrics -> {response.status_code}"
    if status >= 400:
        assert set(response.json()) >= {"error", "detail"}


# -- the console -------------------------------------------------------------------------------
def parked_letter() -> int:
    """A fresh dead letter, parked as the inbox parks one: a message of a type no handler knows
    (so a replay fails again and it stays parked)."""
    message = Received(f"matrix-{uuid4()}", "matrix.unknown", {"type": "matrix.unknown"}, b'{"n": 1}')
    return dead_letters.park(message, reason="unknown_type", detail="no handler for matrix.unknown", attempts=1).pk


PAGES: list[tuple[str, Callable[[World], list[Any]], tuple[Any, ...]]] = [
    ("console:dashboard", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:timeline", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:streams", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:stream", lambda w: [w.account], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:event", lambda w: [w.event], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:catalog", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:projections", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:accounts", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:account", lambda w: [w.account], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:transfers", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:transfer", lambda w: [w.transfer], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:users", lambda w: [], (NOT_LOGGED_IN, 403, 403, 200)),
    ("console:dead_letters", lambda w: [], (NOT_LOGGED_IN, 200, 200, 200)),
    ("console:dead_letter", lambda w: [parked_letter()], (NOT_LOGGED_IN, 200, 200, 200)),
]
LEDGER_ACTION = (NOT_LOGGED_IN, 403, 302, 302)
ADMIN_ACTION = (NOT_LOGGED_IN, 403, 403, 302)
ACTIONS: list[tuple[str, Callable[[World], list[Any]], Callable[[World], dict[str, Any]], tuple[Any, ...]]] = [
    (
        "console:account_open",
        lambda w: [],
        lambda w: {"owner": "Form", "currency": "EUR", "overdraft_limit": 0},
        LEDGER_ACTION,
    ),
    ("console:account_action", lambda w: [w.account, "deposit"], lambda w: {"amount": "0.05"}, LEDGER_ACTION),
    ("console:account_action", lambda w: [w.account, "withdraw"], lambda w: {"amount": "0.05"}, LEDGER_ACTION),
    ("console:account_action", lambda w: [w.account, "freeze"], lambda w: {}, LEDGER_ACTION),
    ("console:account_action", lambda w: [w.account, "unfreeze"], lambda w: {}, LEDGER_ACTION),
    ("console:account_action", lambda w: [w.empty, "close"], lambda w: {}, LEDGER_ACTION),
    ("console:account_forget", lambda w: [w.account], lambda w: {"confirm": w.account}, ADMIN_ACTION),
    (
        "console:transfer_request",
        lambda w: [],
        lambda w: {"from_account": w.account, "to_account": w.other, "amount": "0.01"},
        LEDGER_ACTION,
    ),
    ("console:projection_action", lambda w: ["daily_totals", "pause"], lambda w: {}, LEDGER_ACTION),
    ("console:projection_action", lambda w: ["daily_totals", "resume"], lambda w: {}, LEDGER_ACTION),
    ("console:projection_action", lambda w: ["daily_totals", "rebuild"], lambda w: {"reason": "matrix"}, LEDGER_ACTION),
    (
        "console:user_create",
        lambda w: [],
        lambda w: {"username": f"new-{uuid4().hex[:8]}", "role": "viewer", "password": "a long enough passphrase"},
        ADMIN_ACTION,
    ),
    ("console:user_role", lambda w: [user("viewer").pk], lambda w: {"role": "viewer"}, ADMIN_ACTION),
    (
        "console:token_create",
        lambda w: [],
        lambda w: {"user": user("viewer").pk, "name": "matrix"},
        (NOT_LOGGED_IN, 403, 403, 200),
    ),
    (
        "console:token_revoke",
        lambda w: [ApiToken.issue(user("viewer"))[0].pk],
        lambda w: {},
        ADMIN_ACTION,
    ),
    ("console:dead_letter_replay", lambda w: [parked_letter()], lambda w: {}, LEDGER_ACTION),
    ("console:dead_letter_discard", lambda w: [parked_letter()], lambda w: {"confirm": "yes"}, LEDGER_ACTION),
]


def console(role: str) -> Client:
    client = Client()
    if role != "anonymous":
        client.force_login(user(role))
    return client


def check(response: Any, role: str, expected: Any, what: str) -> None:
    if expected == NOT_LOGGED_IN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), what
    else:
        assert response.status_code == expected, f"{role}: {what} -> {response.status_code}"


def url_names(patterns: list[Any], namespace: str = "") -> set[str]:
    """Every named URL under `patterns`, with its namespace ("console:dashboard")."""
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= url_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(f"{namespace}{pattern.name}")
    return names


def test_the_matrix_names_every_console_view():
    served = {name for name in url_names(get_resolver().url_patterns) if name.startswith("console:")}
    assert served == {name for name, _, _ in PAGES} | {name for name, _, _, _ in ACTIONS}


@pytest.mark.parametrize(("name", "args", "expected"), PAGES, ids=[p[0] for p in PAGES])
def test_each_console_page_for_each_role(transactional_db, name, args, expected):
    world = make_world()
    url = reverse(name, args=args(world))
    for role, status in zip(ROLES, expected, strict=True):
        check(console(role).get(url), role, status, f"GET {url}")


@pytest.mark.parametrize(
    ("name", "args", "data", "expected"), ACTIONS, ids=[f"{a[0]}-{i}" for i, a in enumerate(ACTIONS)]
)
def test_each_console_action_for_each_role(transactional_db, no_rebuild_runs, name, args, data, expected):
    world = make_world()
    for role, status in zip(ROLES, expected, strict=True):
        world.empty = handlers.account_open(owner="Em Pty", currency="EUR", ctx=CommandContext(actor="m")).stream_id
        url = reverse(name, args=args(world))
        fields = {"command_id": str(uuid4()), **{k: str(v) for k, v in data(world).items()}}
        check(console(role).post(url, fields), role, status, f"POST {url}")


# -- the live socket ---------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_the_live_socket_for_each_role(transactional_db, role):
    headers = [(b"origin", b"http://127.0.0.1:8000")]
    if role != "anonymous":
        client = console(role)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))

    async def connects() -> bool:
        ws = WebsocketCommunicator(websocket_application, "/ws/live/?topics=events", headers=headers)
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert asyncio.run(connects()) is (role != "anonymous")
