"""The faults the soak injects, in order, while the clients keep sending. Each records when it
began and ended (seconds since the soak began) and what it found, so the checks can tell the
answers given during an outage from the rest."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.soak.stack import Stack

REBUILT = "account_entries"  # the projection whose rebuild loses its worker (the one with the most rows)
REBUILT_ACROSS_RESTART = "account_summary"  # the projection whose rebuild meets the PostgreSQL restart


@dataclass
class Fault:
    name: str
    began: float
    ended: float = 0.0
    outage: bool = False  # clients may see 503 (with Retry-After) or no answer meanwhile
    found: dict[str, Any] = field(default_factory=dict)


class Injector:
    def __init__(self, stack: Stack, began: float, token: str) -> None:
        self.stack, self.began, self.token = stack, began, token
        self.faults: list[Fault] = []

    def now(self) -> float:
        return time.monotonic() - self.began

    def _fault(self, name: str, outage: bool = False) -> Fault:
        fault = Fault(name, self.now(), outage=outage)
        self.faults.append(fault)
        return fault

    def lag(self) -> int:
        """Events of the log not yet applied, summed over projections and buckets."""
        [(lag,)] = self.stack.sql(
            "SELECT coalesce(sum(n), 0)::bigint FROM (SELECT (SELECT count(*) FROM eventstore_event e "
            "WHERE e.bucket = c.bucket AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)) AS n "
            "FROM projections_checkpoint c) lagging"
        )
        return int(lag)

    # -- the faults -----------------------------------------------------------------------------
    def kill_worker_catching_up(self) -> None:
        """Hold the catch-up worker still until a backlog builds, let it go, and SIGKILL it while it
        works the backlog off; then start another."""
        fault = self._fault("SIGKILL a worker during catch-up")
        worker = self.stack.children["catchup"]
        worker.signal(signal.SIGSTOP)
        time.sleep(4)
        fault.found["lag_before"] = self.lag()
        worker.signal(signal.SIGCONT)
        time.sleep(0.3)
        worker.kill()
        fault.found["lag_at_kill"] = self.lag()
        self.stack.start_worker("catchup", ["projections", "celery"])
        fault.ended = self.now()

    def kill_worker_rebuilding(self, attempts: int = 5) -> None:
        """Start a rebuild over the API and SIGKILL the rebuild worker once it has made progress
        but not finished (tried again with a new rebuild if it finished first); then start another
        worker. Beat hands the stalled rebuild to the successor."""
        fault = self._fault("SIGKILL a worker during a rebuild")
        for attempt in range(1, attempts + 1):
            status, body = self._post(f"/api/projections/{REBUILT}/rebuild")
            assert status == 202, (status, body)
            rebuild_id = body["rebuild"]["id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                [(state, done, total)] = self.stack.sql(
                    "SELECT state, done, total FROM projections_rebuild WHERE id = %s", [rebuild_id]
                )
                if state != "running" or done > 0:
                    break
                time.sleep(0.005)
            if state == "running":
                self.stack.children["rebuilds"].kill()
                fault.found.update(rebuild_id=rebuild_id, done_at_kill=done, total=total, attempts=attempt)
                break
        else:
            raise AssertionError("every rebuild finished before its worker could be killed")
        self.stack.start_worker("rebuilds", ["rebuilds"], concurrency=1)
        fault.ended = self.now()

    def restart_postgres(self, down_s: float) -> None:
        """A fast shutdown (clients' sessions are ended), `down_s` without a server, a start: while
        a rebuild runs (started just before over the API), so one of its batches meets it."""
        status, body = self._post(f"/api/projections/{REBUILT_ACROSS_RESTART}/rebuild")
        assert status == 202, (status, body)
        time.sleep(0.3)
        fault = self._fault(f"restart PostgreSQL ({down_s:.0f} s down)", outage=True)
        [(done, total)] = self.stack.sql(
            "SELECT done, total FROM projections_rebuild WHERE id = %s", [body["rebuild"]["id"]]
        )
        fault.found.update(rebuild_id=body["rebuild"]["id"], rebuild_done=done, rebuild_total=total)
        self.stack.pg.stop()
        time.sleep(down_s)
        self.stack.pg.start()
        fault.ended = self.now()

    def stop_broker(self, seconds: float) -> None:
        fault = self._fault(f"stop the broker (Redis) for {seconds:.0f} s", outage=True)
        self.stack.redis.stop()
        time.sleep(seconds)
        self.stack.redis.start()
        fault.ended = self.now()

    def restart_web(self) -> None:
        fault = self._fault("restart the ASGI server", outage=True)
        self.stack.children["web"].stop()
        self.stack.start_web()
        fault.ended = self.now()

    # -- helpers --------------------------------------------------------------------------------
    def _post(self, path: str) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=10)
        try:
            conn.request("POST", path, headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def at(self, second: float, fault: Callable[[], None]) -> None:
        """Wait until `second` of the soak, then inject the fault."""
        time.sleep(max(0.0, second - self.now()))
        fault()
