import random
from uuid import uuid4

from django.core.management.base import BaseCommand
from django.db import connection

from app.ledger import handlers
from app.ledger.domain.errors import LedgerError
from app.ledger.handlers import CommandContext

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


class Command(BaseCommand):
    help = "Append demo ledger traffic: accounts, deposits, withdrawals, transfers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--accounts", type=int, default=24)
        parser.add_argument("--operations", type=int, default=600)
        parser.add_argument("--if-empty", action="store_true", help="do nothing when the ledger has events")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, accounts: int, operations: int, if_empty: bool, seed: int, **options) -> None:
        if if_empty:
            with connection.cursor() as cur:
                cur.execute("SELECT EXISTS (SELECT 1 FROM eventstore_event WHERE category = 'account')")
                if cur.fetchone()[0]:
                    self.stdout.write("the ledger has events already: no demo data added")
                    return
        rng = random.Random(seed)
        ctx = lambda: CommandContext(actor="seed_demo")  # noqa: E731
        ids = []
        for i in range(accounts):
            currency = "EUR" if i % 6 else "USD"
            result = handlers.account_open(
                account_id=uuid4(),
                owner=OWNERS[i % len(OWNERS)],
                currency=currency,
                overdraft_limit=rng.choice([0, 0, 5_000]),
                ctx=ctx(),
            )
            ids.append((result.stream_id, currency))
            handlers.account_deposit(account_id=result.stream_id, amount=rng.randrange(10_000, 500_000), ctx=ctx())
        refused = 0
        for _ in range(operations):
            (account, currency), (other, other_currency) = rng.sample(ids, 2)
            kind = rng.random()
            try:
                if kind < 0.4:
                    handlers.account_deposit(account_id=account, amount=rng.randrange(100, 50_000), ctx=ctx())
                elif kind < 0.8:
                    handlers.account_withdraw(account_id=account, amount=rng.randrange(100, 80_000), ctx=ctx())
                elif currency == other_currency:
                    handlers.transfer_request(
                        transfer_id=uuid4(),
                        from_account=account,
                        to_account=other,
                        amount=rng.randrange(100, 20_000),
                        ctx=ctx(),
                    )
            except LedgerError:
                refused += 1
        self.stdout.write(f"demo data: {accounts} accounts, {operations} operations ({refused} refused by the rules)")
