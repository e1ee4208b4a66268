"""The minimal deposit endpoint: P2's ceiling, what the web stack itself serves (docs/benchmarks.md).

One SELECT and one INSERT on PostgreSQL in autocommit, no auth, no domain: an async
django-ninja view on a small pool of psycopg async connections. It is mounted only by the
benchmark's own ASGI application (`bench.asgi:application`, which serves the real application
beside it), never by the app's URLs, and it writes only the scratch schema's `bench_deposits`.
psycopg_pool is not a dependency, so the pool is the few lines below: connections opened on
first use, at most POOL_SIZE, handed out through a queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from django.db import connections
from django.http import HttpRequest
from django.urls import path
from ninja import NinjaAPI, Schema

PATH_PREFIX = "/bench/"
POOL_SIZE = 4  # one per client of P2
TABLE = """
CREATE TABLE bench_deposits (
    id bigserial PRIMARY KEY,
    account_id text NOT NULL,
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bench_deposits_account ON bench_deposits (account_id, id)
"""


class Pool:
    """At most `size` async connections to `conninfo`, each in autocommit."""

    def __init__(self, params: dict[str, Any], size: int) -> None:
        self.params, self.size, self.opened = params, size, 0
        self.idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                conn = await psycopg.AsyncConnection.connect(autocommit=True, **self.params)
            except BaseException:
                self.opened -= 1
                raise
        else:
            conn = await self.idle.get()
        try:
            yield conn
        except BaseException:
            await conn.close()  # whatever state it is in, no later request gets it
            self.opened -= 1
            raise
        self.idle.put_nowait(conn)


_pool: Pool | None = None


def pool() -> Pool:
    global _pool
    if _pool is None:
        # Django's own connection parameters (DATABASE_URL: the scratch schema's search_path),
        # without its cursor class and adapters.
        params = connections["default"].get_connection_params()
        keep = {k: v for k, v in params.items() if k not in ("cursor_factory", "context", "client_encoding")}
        _pool = Pool(keep, POOL_SIZE)
    return _pool


class Deposit(Schema):
    amount: int


class Deposited(Schema):
    account_id: str
    previous: int  # the account's last deposit before this one (0: none)
    id: int


api = NinjaAPI(urls_namespace="bench-endpoint", docs_url=None, openapi_url=None)


@api.post("/deposits/{account_id}", response=Deposited)
async def deposit(request: HttpRequest, account_id: str, body: Deposit) -> Deposited:
    async with pool().connection() as conn:
        last = await (
            await conn.execute(
                "SELECT id FROM bench_deposits WHERE account_id = %s ORDER BY id DESC LIMIT 1", [account_id]
            )
        ).fetchone()
        row = await (
            await conn.execute(
                "INSERT INTO bench_deposits (account_id, amount) VALUES (%s, %s) RETURNING id",
                [account_id, body.amount],
            )
        ).fetchone()
    assert row is not None  # INSERT ... RETURNING answers its row
    return Deposited(account_id=account_id, previous=last[0] if last else 0, id=row[0])


urlpatterns = [path(PATH_PREFIX.strip("/") + "/", api.urls)]
