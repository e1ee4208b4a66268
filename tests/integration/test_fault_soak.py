"""A fault soak that loses nothing (docs/reliability.md).

Eight clients with fixed seeds send commands and transfers for over a minute to a stack the test
owns (tests/soak/stack.py: its own PostgreSQL, Redis, ASGI server, workers and beat), while the
test SIGKILLs a worker during catch-up and one during a rebuild, restarts PostgreSQL, stops the
broker for 30 s and restarts the ASGI server. Then everything acknowledged is in the log exactly
once, money is conserved, the read models verify, every transfer ended, and the clients only ever
saw the contract's answers. The figures go to artifacts/soak/figures.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from tests.soak import checks
from tests.soak.clients import Accounts, Client, Visitor
from tests.soak.faults import REBUILT, REBUILT_ACROSS_RESTART, Injector
from tests.soak.stack import ROOT, Stack

CLIENTS = 8
SEED = int(os.environ.get("SOAK_SEED", "12"))
PASSWORD = "soak console passphrase"
BROKER_DOWN_S = 30
POSTGRES_DOWN_S = 3
TRAFFIC_S = 80  # the last fault ends at about 72 s; the clients go on a little after it
SETTINGS = {
    "REBUILD_BATCH_EVENTS": "20",  # many small batches: a rebuild lasts long enough to be killed in
    "REBUILD_STALLED_AFTER_S": "3",  # beat hands a killed worker's rebuild on soon
    "REDIS_TIMEOUT_S": "1",
    "LOG_LEVEL": "WARNING",
    # ... but for the lines the stack waits for: the worker's "ready." and beat's "Starting"
    "LOG_LEVELS": "celery.apps=INFO,celery.beat=INFO",
}


@pytest.fixture
def stack(tmp_path: Path):
    soak = Stack(tmp_path, settings=SETTINGS)
    try:
        soak.start()
        soak.start_worker("catchup", ["projections", "celery"])
        soak.start_worker("rebuilds", ["rebuilds"], concurrency=1)
        soak.start_beat()
        soak.start_web()
        yield soak
    finally:
        soak.stop()


@pytest.mark.slow
def test_a_fault_soak_loses_nothing(stack: Stack) -> None:
    tokens = stack.tokens([f"soak-{i}" for i in range(CLIENTS)] + ["soak-ops", "soak-visitor"], PASSWORD)
    began = time.monotonic()
    accounts = Accounts()
    clients: list[Client | Visitor] = [
        Client(i, tokens[f"soak-{i}"], stack.port, accounts, began, SEED) for i in range(CLIENTS)
    ]
    clients.append(Visitor(CLIENTS, "soak-visitor", PASSWORD, stack.port, began, SEED))
    for client in clients:
        client.start()
    faults = Injector(stack, began, tokens["soak-ops"])
    try:
        faults.at(6, faults.kill_worker_catching_up)
        faults.at(16, faults.kill_worker_rebuilding)
        faults.at(24, lambda: faults.restart_postgres(POSTGRES_DOWN_S))
        faults.at(32, lambda: faults.stop_broker(BROKER_DOWN_S))
        faults.at(max(faults.now() + 2, 70), faults.restart_web)
        time.sleep(max(0.0, TRAFFIC_S - faults.now()))
    finally:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.join(timeout=200)
    traffic_s = faults.now()
    settle_s = checks.wait_settled(stack, tokens["soak-ops"])
    verify = stack.manage("verify_projections")

    commands = [c for client in clients for c in client.commands]
    answers = [a for client in clients for a in client.answers]
    total, expected = checks.money(stack, commands)
    figures = {
        "seed": SEED,
        "clients": CLIENTS,
        "traffic_s": round(traffic_s, 1),
        "settled_after_s": round(settle_s, 1),
        "commands": len(commands),
        "acknowledged": sum(1 for c in commands if c.status is not None and c.status < 300),
        "refused_4xx": sum(1 for c in commands if c.status is not None and 400 <= c.status < 500),
        "requests": len(answers),
        "events": stack.sql("SELECT count(*) FROM eventstore_event")[0][0],
        "transfers": dict(stack.sql("SELECT status, count(*) FROM ledger_transfer GROUP BY 1 ORDER BY 1")),
        "balances": total,
        "deposits_less_withdrawals": expected,
        "answers": checks.answers_seen(answers),
        "per_client": checks.per_client(clients),
        "per_fault": checks.per_fault(faults.faults, answers),
        "problems": checks.contract_problems(answers, faults.faults),
        "exactly_once": checks.exactly_once(stack, commands),
        "read_out_of_order": checks.read_order(stack),
    }
    out = ROOT / "artifacts" / "soak"
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    (out / "answers.jsonl").write_text("".join(json.dumps(dataclasses.asdict(a)) + "\n" for a in answers))

    assert [c.failure for c in clients if c.failure] == []
    assert figures["commands"] > 500 and traffic_s >= 60
    assert len(faults.faults) == 5
    caught_up, rebuilding = (f.found for f in faults.faults[:2])
    assert caught_up["lag_at_kill"] > 0  # the worker died with a backlog in hand
    assert 0 < rebuilding["done_at_kill"] < rebuilding["total"]  # and the other mid-rebuild
    assert figures["exactly_once"] == []
    assert figures["read_out_of_order"] == 0
    assert total == expected, figures
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    assert figures["problems"] == []
    last = {p["name"]: p.get("last_rebuild") or {} for p in checks.projections(stack, tokens["soak-ops"])}
    assert last[REBUILT]["state"] == "done" and last[REBUILT_ACROSS_RESTART]["state"] == "done", last
