"""Demo ledger traffic for the console.

    manage.py seed_demo                  accounts, a few thousand events, transfers (one refunded)
    manage.py seed_demo --if-empty       the same, only on a ledger with no accounts (`make run`)
    manage.py seed_demo --live           keep going: deposits, withdrawals, transfers, now and then
                                         a new account, about --rate commands a second, until Ctrl-C

Commands go through the ledger's handlers, as the API's do; the worker's transfer process
manager completes (or fails, or refunds) the transfers the seed requests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from app.ledger import handlers
from app.ledger.commands import CommandContext, NotFound
from app.ledger.domain.errors import LedgerError
from app.ledger.models import AccountSummary

OWNERS = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "Ken Thompson",
    "Frances Allen",
    "John Backus",
    "Radia Perlman",
    "Tony Hoare",
]
LIVE_MIN_ACCOUNTS = 8
REPORT_EVERY_S = 10.0

Account = tuple[UUID, str]  # id, currency


def ctx() -> CommandContext:
    return CommandContext(actor="seed_demo")  # a new command id (so new event ids) per command


class Command(BaseCommand):
    help = "Append demo ledger traffic: accounts, deposits, withdrawals, transfers; --live keeps going."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--accounts", type=int, default=24)
        parser.add_argument("--operations", type=int, default=2500, help="commands after opening the accounts")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the ledger has accounts")
        parser.add_argument("--seed", type=int, default=7, help="random seed (the same data each time)")
        parser.add_argument("--live", action="store_true", help="keep sending commands until Ctrl-C")
        parser.add_argument("--rate", type=float, default=10.0, help="with --live: commands per second")
        parser.add_argument("--max-commands", type=int, default=0, help="with --live: stop after this many")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["live"]:
            self.live(random.Random(), rate=o["rate"], max_commands=o["max_commands"])
            return
        if o["if_empty"] and _ledger_has_accounts():
            self.stdout.write("the ledger has events already: no demo data added")
            return
        self.seed(random.Random(o["seed"]), accounts=o["accounts"], operations=o["operations"])

    def seed(self, rng: random.Random, *, accounts: int, operations: int) -> None:
        opened = [open_account(rng, i) for i in range(accounts)]
        refused = sum(not random_command(rng, opened, new_accounts=False) for _ in range(operations))
        self.stdout.write(
            f"demo data: {accounts} accounts, {operations} commands ({refused} refused by the rules), "
            f"{_staged_outcomes(rng, opened)}; the worker completes the transfers"
        )

    def live(self, rng: random.Random, *, rate: float, max_commands: int) -> None:
        accounts = _known_accounts()
        while len(accounts) < LIVE_MIN_ACCOUNTS:
            accounts.append(open_account(rng, len(accounts)))
        self.stdout.write(f"live traffic: about {rate:g} commands/s over {len(accounts)} accounts; Ctrl-C stops")
        sent = refused = 0
        started = last_report = time.monotonic()
        try:
            while not max_commands or sent < max_commands:
                wait = started + sent / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                refused += not random_command(rng, accounts, new_accounts=True)
                sent += 1
                if time.monotonic() - last_report >= REPORT_EVERY_S:
                    last_report = time.monotonic()
                    self.stdout.write(f"{sent} commands ({refused} refused), {sent / (last_report - started):.1f}/s")
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"stopped after {sent} commands ({refused} refused by the rules)")


def open_account(rng: random.Random, i: int) -> Account:
    currency = "EUR" if i % 6 else "USD"
    result = handlers.account_open(
        account_id=uuid4(),
        owner=OWNERS[i % len(OWNERS)],
        currency=currency,
        overdraft_limit=rng.choice([0, 0, 5_000]),
        ctx=ctx(),
    )
    handlers.account_deposit(account_id=result.stream_id, amount=rng.randrange(10_000, 500_000), ctx=ctx())
    return result.stream_id, currency


def random_command(rng: random.Random, accounts: list[Account], *, new_accounts: bool) -> bool:
    """One realistic command on random accounts; False when the ledger's rules refused it."""
    (account, currency), (other, other_currency) = rng.sample(accounts, 2)
    kind = rng.random()
    command: Callable[[], Any]
    if new_accounts and kind < 0.02:
        accounts.append(open_account(rng, len(accounts)))
        return True
    if kind < 0.45:
        command = lambda: handlers.account_deposit(account_id=account, amount=rng.randrange(100, 50_000), ctx=ctx())  # noqa: E731
    elif kind < 0.82:
        command = lambda: handlers.account_withdraw(account_id=account, amount=rng.randrange(100, 60_000), ctx=ctx())  # noqa: E731
    elif currency == other_currency:
        command = lambda: handlers.transfer_request(  # noqa: E731
            transfer_id=uuid4(), from_account=account, to_account=other, amount=rng.randrange(100, 20_000), ctx=ctx()
        )
    else:
        command = lambda: handlers.account_deposit(account_id=other, amount=rng.randrange(100, 5_000), ctx=ctx())  # noqa: E731
    try:
        command()
    except (LedgerError, NotFound):
        return False
    return True


def _staged_outcomes(rng: random.Random, accounts: list[Account]) -> str:
    """Transfers whose outcome is set up now and played out by the worker: one refunded (its
    target closes before the credit), one failed for want of funds; and a frozen account."""
    source, currency = next(a for a in accounts if a[1] == "EUR")
    target = handlers.account_open(account_id=uuid4(), owner="Closing Soon", currency=currency, ctx=ctx()).stream_id
    handlers.account_deposit(account_id=source, amount=5_000, reference="for the transfer to refund", ctx=ctx())
    handlers.transfer_request(transfer_id=uuid4(), from_account=source, to_account=target, amount=1_500, ctx=ctx())
    handlers.account_close(account_id=target, reason="closed before the transfer's credit", ctx=ctx())
    poor = handlers.account_open(account_id=uuid4(), owner="Short of Funds", currency=currency, ctx=ctx()).stream_id
    handlers.transfer_request(transfer_id=uuid4(), from_account=poor, to_account=source, amount=99_999, ctx=ctx())
    frozen = rng.choice([a for a, _ in accounts if a != source])
    handlers.account_freeze(account_id=frozen, reason="demo: a frozen account", ctx=ctx())
    return "a transfer to be refunded, one to fail for insufficient funds, a frozen account"


def _ledger_has_accounts() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM eventstore_event WHERE category = 'account')")
        return cur.fetchone()[0]


def _known_accounts() -> list[Account]:
    """Open accounts from the read model (what the worker has projected so far)."""
    return list(AccountSummary.objects.filter(status="open").values_list("account_id", "currency")[:1000])
