"""What must hold once the soak is over, and its figures.

- every acknowledged command's event is in the log exactly once, and nothing else the clients
  sent is: the events the clients' users appended are exactly the events at the positions the
  acknowledgements named, one each;
- every stream's events are read in version order (the read order is by transaction id);
- money is conserved: the balances add up to the acknowledged deposits less the acknowledged
  withdrawals (transfers only move money);
- every transfer ended (completed or failed), the projections caught up (lag 0, nothing failed,
  the rebuild swapped in), `manage.py verify_projections` exits 0;
- the clients saw only contract answers: 2xx, 4xx with a contract error code, and 5xx only as a
  503 with `Retry-After` during an outage; no request outlasted the client's timeout.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from app.api.errors import ERROR_CODES
from tests.soak.clients import TIMEOUT_S, Answer, Client, Command, Visitor
from tests.soak.faults import Fault
from tests.soak.stack import Stack

GRACE_S = 5.0  # an outage's answers may trail its end by this much (connections re-open, caches expire)
SOAK_ACTORS = "soak-%"


def projections(stack: Stack, token: str) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        conn.request("GET", "/api/projections", headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else []
    finally:
        conn.close()


def settled(stack: Stack, token: str) -> bool:
    """Every transfer ended, every projection and process manager caught up, no rebuild running."""
    [(pending,)] = stack.sql("SELECT count(*) FROM ledger_transfer WHERE status = 'pending'")
    if pending:
        return False
    states = projections(stack, token)
    return bool(states) and all(p["lag"] == 0 and p["status"] == "running" and "rebuild" not in p for p in states)


def wait_settled(stack: Stack, token: str, timeout: float = 150) -> float:
    began = time.monotonic()
    while not settled(stack, token):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not settled after {timeout} s: {projections(stack, token)}")
        time.sleep(1)
    return time.monotonic() - began


def exactly_once(stack: Stack, commands: list[Command]) -> list[str]:
    problems = []
    acknowledged = [c for c in commands if c.status is not None and 200 <= c.status < 300]
    positions = Counter(c.result["position"] for c in acknowledged)
    twice = [p for p, n in positions.items() if n > 1]
    if twice:
        problems.append(f"two acknowledgements name the same position: {twice[:5]}")
    logged = Counter(
        row[0]
        for row in stack.sql(
            "SELECT e.global_position FROM eventstore_event e WHERE e.metadata->>'actor' LIKE %s", [SOAK_ACTORS]
        )
    )
    missing = set(positions) - set(logged)
    extra = set(logged) - set(positions)
    if missing:
        problems.append(f"{len(missing)} acknowledged commands have no event in the log: {sorted(missing)[:5]}")
    if extra:
        problems.append(f"{len(extra)} events in the log were never acknowledged: {sorted(extra)[:5]}")
    [(duplicated,)] = stack.sql(
        "SELECT count(*) FROM (SELECT metadata->>'command_id' FROM eventstore_event "
        "WHERE metadata->>'actor' LIKE %s GROUP BY 1 HAVING count(*) > 1) d",
        [SOAK_ACTORS],
    )
    if duplicated:
        problems.append(f"{duplicated} commands appended more than one event")
    unresolved = [c for c in commands if c.status is None]
    if unresolved:
        problems.append(f"{len(unresolved)} commands never got a final answer: {[c.key for c in unresolved[:5]]}")
    return problems


def read_order(stack: Stack) -> int:
    """Events read out of their stream's version order: the log's read order is by transaction id,
    so an event appended under an older transaction id than its stream's previous version's is
    read before it (and a projection skips the earlier one). Must be 0."""
    [(wrong,)] = stack.sql(
        "SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id "
        "ORDER BY tx_id, global_position) AS before FROM eventstore_event) e WHERE e.version <> e.before + 1"
    )
    return int(wrong)


def money(stack: Stack, commands: list[Command]) -> tuple[int, int]:
    """(the balances' sum, what the acknowledged deposits and withdrawals make it)."""
    expected = sum(
        c.amount if c.kind == "deposit" else -c.amount
        for c in commands
        if c.kind in ("deposit", "withdrawal") and c.status is not None and 200 <= c.status < 300
    )
    [(total,)] = stack.sql("SELECT coalesce(sum(balance), 0)::bigint FROM ledger_account")
    return int(total), expected


def during(answer: Answer, faults: list[Fault]) -> Fault | None:
    """The outage this request was in flight during: it may have been sent just before the fault
    began (a slow login is still hashing when PostgreSQL stops) or answered up to GRACE_S after."""
    for fault in faults:
        if fault.outage and answer.at + answer.seconds >= fault.began - 0.5 and answer.at <= fault.ended + GRACE_S:
            return fault
    return None


API_KINDS = ("open", "deposit", "withdrawal", "transfer", "read")


def contract_problems(answers: list[Answer], faults: list[Fault]) -> list[str]:
    """Every answer that the contract does not allow, in words."""
    problems = []
    for a in answers:
        outage = during(a, faults)
        said = f"client {a.client} {a.kind} at {a.at:.1f} s"
        if a.seconds > TIMEOUT_S or a.code == "timeout":
            problems.append(f"{said}: no answer within the client's {TIMEOUT_S:.0f} s")
        elif a.status is None:
            if outage is None:
                problems.append(f"{said}: {a.code} outside any outage")
        elif a.status >= 500:
            if a.status != 503 or not a.retry_after:
                problems.append(f"{said}: {a.status} {a.code!r}" + ("" if a.retry_after else " without Retry-After"))
            elif outage is None and a.kind != "health":  # /healthz says so whenever a part is away
                problems.append(f"{said}: 503 {a.code!r} outside any outage")
        elif a.kind in API_KINDS:
            if a.status >= 400 and ERROR_CODES.get(a.code) != a.status:
                problems.append(f"{said}: {a.status} {a.code!r} is not in the contract")
        elif a.status not in (200, 302):
            problems.append(f"{said}: {a.status}")
    return problems


# -- figures --------------------------------------------------------------------------------------
def per_client(clients: Sequence[Client | Visitor]) -> list[dict[str, Any]]:
    rows = []
    for c in clients:
        sent = c.commands
        rows.append(
            {
                "client": c.index,
                "kind": "console" if isinstance(c, Visitor) else "api",
                "commands": len(sent),
                "acknowledged": sum(1 for m in sent if m.status is not None and m.status < 300),
                "refused_4xx": sum(1 for m in sent if m.status is not None and 400 <= m.status < 500),
                "requests": len(c.answers),
                "resent": sum(m.attempts - 1 for m in sent),
                "503": sum(1 for a in c.answers if a.status == 503),
                "no_answer": sum(1 for a in c.answers if a.status is None),
                "slowest_s": round(max((a.seconds for a in c.answers), default=0), 2),
                "seen": answers_seen(c.answers),
            }
        )
    return rows


def per_fault(faults: list[Fault], answers: list[Answer]) -> list[dict[str, Any]]:
    """What the clients saw while each fault lasted (an outage's window a little longer: GRACE_S),
    but for 2xx and the contract's 4xx, by kind of request."""
    rows = []
    for f in faults:
        end = f.ended + (GRACE_S if f.outage else 0)
        window = [a for a in answers if f.began - 0.5 <= a.at <= end]
        unusual = [a for a in window if a.status is None or a.status >= 500]
        rows.append(
            {
                "fault": f.name,
                "at_s": round(f.began, 1),
                "lasted_s": round(f.ended - f.began, 1),
                "found": f.found,
                "answers": len(window),
                "unavailable": dict(Counter(f"{a.kind}: {_said(a)}" for a in unusual)),
            }
        )
    return rows


def _said(a: Answer) -> str:
    return f"{a.status} {a.code}".strip() if a.status else f"no answer ({a.code})"


def answers_seen(answers: list[Answer]) -> dict[str, int]:
    return dict(Counter(_said(a) for a in answers))
