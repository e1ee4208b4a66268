"""The soak's clients: threads, each with a fixed seed and an operator's token, sending ledger
commands over HTTP as a careful client of the contract would.

Every command carries an Idempotency-Key and is sent again, with the same key and body, on a 503
or when no answer came (refused or dropped connection, timeout), until it gets a final answer: 2xx
(acknowledged) or 4xx (refused). Every answer is recorded: when, what, status, error code, whether
a 503 had `Retry-After`, how long it took. Now and then a client also reads (an account, a
transfer, `/healthz`, the login page), and those answers are recorded too.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 10.0  # the client's timeout: no answer within it counts as a hang
GIVE_UP_S = 150.0  # a command still without a final answer after this long is a failure
CURRENCY = "EUR"


@dataclass
class Answer:
    client: int
    at: float  # seconds since the soak began
    kind: str  # deposit, withdrawal, transfer, open, read, health, login
    status: int | None  # None: no answer
    code: str = ""  # the error code, or what happened to the connection
    retry_after: bool = False
    seconds: float = 0.0


@dataclass
class Command:
    """One command as sent (its key, method, path and body never change between retries)."""

    client: int
    kind: str
    key: str
    path: str
    body: bytes
    amount: int = 0
    status: int | None = None  # the final answer's
    result: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


class Accounts:
    """Every account the clients have opened, shared: transfers go to anyone's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []

    def add(self, account_id: str) -> None:
        with self.lock:
            self.ids.append(account_id)

    def pick(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(self.ids) if self.ids else None


class Client(threading.Thread):
    def __init__(self, index: int, token: str, port: int, accounts: Accounts, began: float, seed: int) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.index, self.token, self.port, self.shared, self.began = index, token, port, accounts, began
        self.rng = random.Random(seed * 1000 + index)
        self.stopping = threading.Event()
        self.answers: list[Answer] = []
        self.commands: list[Command] = []
        self.mine: list[str] = []
        self.transfers: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(2):
                self._open()
            while not self.stopping.is_set():
                self._one()
                time.sleep(self.rng.uniform(0.05, 0.3))
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.failure = exc

    def _one(self) -> None:
        roll = self.rng.random()
        if roll < 0.05 and len(self.mine) < 8:
            self._open()
        elif roll < 0.40:
            self._money("deposit", "deposits", self.rng.randint(100, 10_000))
        elif roll < 0.60:
            self._money("withdrawal", "withdrawals", self.rng.randint(50, 6_000))
        elif roll < 0.90:
            target = self.shared.pick(self.rng)
            if target is not None:
                source = self.rng.choice(self.mine)
                if source != target:
                    body = {"from_account": source, "to_account": target, "amount": self.rng.randint(50, 5_000)}
                    command = self._send("transfer", "/api/transfers", body, body["amount"])
                    if command.status == 202:
                        self.transfers.append(command.result["transfer_id"])
        elif roll < 0.96:
            self._read()
        else:
            self._request("GET", "/healthz" if self.rng.random() < 0.5 else "/login/", None, "health")

    def _open(self) -> None:
        body = {"owner": f"Soak Client {self.index}", "currency": CURRENCY}
        command = self._send("open", "/api/accounts", body)
        if command.status == 201:
            self.mine.append(command.result["account_id"])
            self.shared.add(command.result["account_id"])

    def _money(self, kind: str, path: str, amount: int) -> None:
        account = self.rng.choice(self.mine)
        self._send(kind, f"/api/accounts/{account}/{path}", {"amount": amount}, amount)

    def _read(self) -> None:
        if self.transfers and self.rng.random() < 0.5:
            self._request("GET", f"/api/transfers/{self.rng.choice(self.transfers)}", None, "read")
        else:
            self._request("GET", f"/api/accounts/{self.rng.choice(self.mine)}", None, "read")

    def _send(self, kind: str, path: str, body: dict[str, Any], amount: int = 0) -> Command:
        command = Command(
            self.index, kind, f"soak-{self.index}-{len(self.commands)}", path, json.dumps(body).encode(), amount
        )
        self.commands.append(command)
        first = time.monotonic()
        while True:
            command.attempts += 1
            status, payload = self._request("POST", path, command.body, kind, key=command.key)
            if status is not None and status < 500:
                command.status, command.result = status, payload
                return command
            if time.monotonic() - first > GIVE_UP_S:
                return command  # no final answer: the test fails on it
            time.sleep(self.rng.uniform(0.2, 0.6))  # a 503 or no answer: the same key again, shortly

    def _request(
        self, method: str, path: str, body: bytes | None, kind: str, key: str | None = None
    ) -> tuple[int | None, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        started = time.monotonic()
        at = started - self.began
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError:
            self.answers.append(Answer(self.index, at, kind, None, "timeout", seconds=time.monotonic() - started))
            return None, {}
        except ConnectionRefusedError:
            self.answers.append(Answer(self.index, at, kind, None, "refused", seconds=time.monotonic() - started))
            return None, {}
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            self.answers.append(
                Answer(self.index, at, kind, None, type(exc).__name__, seconds=time.monotonic() - started)
            )
            return None, {}
        finally:
            conn.close()
        payload: dict[str, Any] = {}
        if response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": "not_json"}
        code = payload.get("error", "") if isinstance(payload, dict) else ""
        self.answers.append(
            Answer(
                self.index,
                at,
                kind,
                response.status,
                str(code),
                retry_after=response.headers.get("Retry-After") is not None,
                seconds=time.monotonic() - started,
            )
        )
        return response.status, payload if isinstance(payload, dict) else {}


class Visitor(threading.Thread):
    """A person on the console (tests/integration/console/live.py's Browser, which keeps the
    cookies): logs in with the form, looks at pages, logs in afresh now and then. Its answers are
    recorded as the clients' are."""

    PAGES = ("/", "/accounts/", "/transfers/", "/projections/", "/timeline/", "/streams/", "/catalog/")

    def __init__(self, index: int, username: str, password: str, port: int, began: float, seed: int) -> None:
        super().__init__(name=f"soak-visitor-{index}", daemon=True)
        self.index, self.username, self.password, self.port, self.began = index, username, password, port, began
        self.rng = random.Random(seed * 1000 + index)
        self.stopping = threading.Event()
        self.answers: list[Answer] = []
        self.commands: list[Command] = []  # none: a visitor only looks
        self.failure: BaseException | None = None

    def run(self) -> None:
        from tests.integration.console.live import Browser

        try:
            browser = None
            while not self.stopping.is_set():
                if browser is None or self.rng.random() < 0.1:
                    browser = Browser(self.port, timeout=TIMEOUT_S)
                    if not self._log_in(browser):
                        browser = None
                else:
                    self._look(browser, "GET", self.rng.choice(self.PAGES), None, "console")
                time.sleep(self.rng.uniform(0.2, 0.5))
        except BaseException as exc:  # reported by the test
            self.failure = exc

    def _log_in(self, browser) -> bool:  # type: ignore[no-untyped-def]
        status, page = self._look(browser, "GET", "/login/", None, "login")
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if status != 200 or not found:
            return False
        form = {"csrfmiddlewaretoken": found.group(1), "username": self.username, "password": self.password}
        status, _ = self._look(browser, "POST", "/login/", form, "login")
        return status == 302

    def _look(self, browser, method: str, path: str, form, kind: str) -> tuple[int | None, str]:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        at = started - self.began
        try:
            status, text = browser.request(method, path, form)
        except TimeoutError:
            self.answers.append(Answer(self.index, at, kind, None, "timeout", seconds=time.monotonic() - started))
            return None, ""
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            seconds = time.monotonic() - started
            self.answers.append(Answer(self.index, at, kind, None, type(exc).__name__, seconds=seconds))
            return None, ""
        retry_after = browser.response_headers.get("Retry-After") is not None
        seconds = time.monotonic() - started
        code = next((part for part in ("database", "Redis") if f"{part} cannot be reached" in text), "")
        self.answers.append(Answer(self.index, at, kind, status, code, retry_after=retry_after, seconds=seconds))
        return status, text
