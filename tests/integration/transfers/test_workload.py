"""A random concurrent workload: deposits, withdrawals, freezes, transfers, a target closed under
them and deadlines expiring under them. Every transfer ends completed or failed (refunded where
debited), and money is conserved throughout, transfers in flight included until they end."""

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from uuid import UUID

from django.core.management import call_command
from django.db import connections

from app.ledger import handlers
from app.ledger.domain.errors import LedgerError
from app.ledger.models import AccountSummary, Entry, TransferSummary
from app.ledger.process import expire_transfers
from eventstore.errors import ConcurrencyError
from eventstore.records import Checkpoint
from eventstore.store import EventStore
from projections.models import BucketCheckpoint
from tests.conftest import wait_for
from tests.integration.projections.conftest import replay_whole_log
from tests.integration.transfers.conftest import (
    PROCESS,
    account_state,
    ctx,
    open_account,
    read_models_current,
    request,
    transfer_state,
    wait_finished,
)

CLIENTS, OPERATIONS = 4, 50
OPENING_BALANCE = 1000
EXPIRY_DEADLINE_S = 1.0  # short enough that some transfers expire before their debit is confirmed
FAILURES = {"insufficient_funds", "account_frozen", "account_closed", "expired"}


@dataclass
class Cut:
    """The accounts' events below the read horizon, folded. The horizon makes it a consistent cut:
    a step's append gets its transaction id after the event it reacts to has committed, so the cut
    never holds an effect without its cause."""

    deposited: int = 0
    withdrawn: int = 0
    balances: int = 0
    moves: defaultdict[UUID, Counter] = field(default_factory=lambda: defaultdict(Counter))
    amounts: dict[UUID, int] = field(default_factory=dict)

    @property
    def in_flight(self) -> int:
        """Money debited for transfers neither credited nor refunded yet."""
        return sum(
            self.amounts[t]
            for t, m in self.moves.items()
            if m["TransferDebited"] and not m.keys() & {"TransferCredited", "TransferRefunded"}
        )

    def violations(self) -> list[str]:
        found = []
        if self.balances + self.in_flight != self.deposited - self.withdrawn:
            found.append(f"balances {self.balances} + in flight {self.in_flight} != {self.deposited - self.withdrawn}")
        for t, m in self.moves.items():
            if any(n > 1 for n in m.values()):
                found.append(f"{t} moved money more than once: {dict(m)}")
            if m["TransferCredited"] and m["TransferRefunded"]:
                found.append(f"{t} both credited and refunded")
            if (m["TransferCredited"] or m["TransferRefunded"]) and not m["TransferDebited"]:
                found.append(f"{t} credited or refunded without a debit")
            if m["TransferSettled"] and not m["TransferCredited"]:
                found.append(f"{t} settled without a credit")
        return found


def cut(start: Checkpoint, accounts: set[UUID]) -> Cut:
    store, c, checkpoint = EventStore(), Cut(), start
    while True:
        page = store.read_all(checkpoint, limit=5000, categories=["account"])
        for e in page.events:
            if e.stream_id not in accounts:
                continue
            amount = int(e.data.get("amount", 0))
            if e.type == "ledger.FundsDeposited":
                c.deposited += amount
            elif e.type == "ledger.FundsWithdrawn":
                c.withdrawn += amount
            elif "transfer_id" in e.data:
                transfer = UUID(e.data["transfer_id"])
                c.moves[transfer][e.type.removeprefix("ledger.")] += 1
                c.amounts.setdefault(transfer, amount)
                assert amount in (0, c.amounts[transfer]), f"{transfer} moved two amounts"
            c.balances += {
                "ledger.FundsDeposited": amount,
                "ledger.TransferCredited": amount,
                "ledger.TransferRefunded": amount,
            }.get(e.type, 0)
            c.balances -= {"ledger.FundsWithdrawn": amount, "ledger.TransferDebited": amount}.get(e.type, 0)
        if len(page.events) < 5000:
            return c
        checkpoint = page.checkpoint


def test_a_random_concurrent_workload_ends_every_transfer_and_conserves_money(worker):
    start = EventStore().head()  # every event of this test's accounts sorts after it
    regular = [open_account(OPENING_BALANCE, owner=f"Load {i}") for i in range(6)]
    sink = open_account(owner="Sink")  # only receives, until it is emptied and closed under the load
    accounts = [*regular, sink]
    deposited, withdrawn = [OPENING_BALANCE * len(regular)], []
    transfers: list[UUID] = []
    expired: list[UUID] = []
    errors: list[BaseException] = []
    violations: list[str] = []
    samples = [0]
    halfway, done = threading.Event(), threading.Event()

    def guarded(work):
        def run(*args):
            try:
                work(*args)
            except BaseException as exc:
                errors.append(exc)
            finally:
                connections.close_all()

        return run

    @guarded
    def client(n: int) -> None:
        rng = random.Random(n)
        for i in range(OPERATIONS):
            if n == 0 and i == OPERATIONS // 2:
                halfway.set()
            account, amount, roll = rng.choice(regular), rng.randrange(1, 300), rng.random()
            try:
                if roll < 0.25:
                    handlers.account_deposit(account_id=account, amount=amount, ctx=ctx())
                    deposited.append(amount)
                elif roll < 0.4:
                    handlers.account_withdraw(account_id=account, amount=amount, ctx=ctx())
                    withdrawn.append(amount)
                elif roll < 0.45:  # one account is frozen now and then
                    change = handlers.account_freeze if rng.random() < 0.5 else handlers.account_unfreeze
                    change(account_id=regular[0], ctx=ctx())
                else:
                    target = rng.choice([a for a in accounts if a != account])
                    transfers.append(request(account, target, amount))
            except (LedgerError, ConcurrencyError):  # refused: no money moved
                pass
            time.sleep(rng.random() * 0.02)

    @guarded
    def closer() -> None:
        """Empty the sink and close it while transfers to it are on their way."""
        halfway.wait(timeout=60)
        while account_state(sink).status != "closed":
            try:
                balance = account_state(sink).balance
                if balance:
                    handlers.account_withdraw(account_id=sink, amount=balance, ctx=ctx())
                    withdrawn.append(balance)
                handlers.account_close(account_id=sink, ctx=ctx())
            except (LedgerError, ConcurrencyError):  # credited meanwhile: again
                pass

    @guarded
    def expirer() -> None:
        while any(t.is_alive() for t in clients):
            expired.extend(expire_transfers(deadline_s=EXPIRY_DEADLINE_S))
            time.sleep(0.05)

    @guarded
    def sampler() -> None:
        while not done.is_set():
            violations.extend(cut(start, set(accounts)).violations())
            samples[0] += 1
            time.sleep(0.2)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    helpers = [threading.Thread(target=work) for work in (closer, expirer, sampler)]
    for t in clients + helpers:
        t.start()
    for t in clients:
        t.join()
    for transfer in transfers:
        wait_finished(transfer, timeout=120)
    done.set()
    for t in helpers:
        t.join()
    assert not errors, errors
    assert samples[0] >= 1 and not violations, violations[:5]

    # every transfer ended; money moved once, and came back where it was debited and not credited
    final = cut(start, set(accounts))
    assert not final.violations() and final.in_flight == 0
    outcomes: Counter = Counter()
    for transfer in transfers:
        state, moves = transfer_state(transfer), final.moves[transfer]
        outcomes[state.reason or state.status] += 1
        if state.status == "completed":
            assert moves == Counter(TransferDebited=1, TransferCredited=1, TransferSettled=1), (transfer, moves)
        else:
            assert state.status == "failed" and state.reason in FAILURES, (transfer, state)
            assert not moves["TransferCredited"] and moves["TransferRefunded"] == moves["TransferDebited"], moves
            if state.reason in ("insufficient_funds", "account_frozen"):
                assert not moves["TransferDebited"], (transfer, state.reason, moves)
    assert outcomes["completed"] >= 1 and sum(outcomes.values()) == len(transfers) >= 20, outcomes
    assert account_state(sink).status == "closed"

    # money is conserved: what the clients put in minus what they took out
    folded = {a: account_state(a) for a in accounts}
    assert sum(s.balance for s in folded.values()) == sum(deposited) - sum(withdrawn), outcomes
    assert not any(s.in_flight for s in folded.values())

    # the read models equal a fresh fold
    wait_for(lambda: read_models_current(accounts, transfers), timeout=60, what="the read models")
    for account, state in folded.items():
        row = AccountSummary.objects.get(account_id=account)
        assert (int(row.balance), row.status) == (state.balance, state.status)
        assert sum(e.amount for e in Entry.objects.filter(account_id=account)) == state.balance
    for row in TransferSummary.objects.filter(transfer_id__in=transfers):
        state = transfer_state(row.transfer_id)
        assert (row.status, row.reason) == (state.status, state.reason)
    assert TransferSummary.objects.filter(transfer_id__in=transfers).count() == len(transfers)
    # and every read model equals a replay of the whole log (verify_projections exits 1 on any difference),
    # once the live read models have applied the whole log too, not only this test's part of it
    replay_whole_log()
    call_command("verify_projections")
    assert not BucketCheckpoint.objects.filter(projection=PROCESS, failed=True).exists()
