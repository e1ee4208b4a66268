"""`make run` as a person sees it: the supervisor (`python -m app.stack run`) started for real,
with embedded PostgreSQL and Redis of its own under a temporary data folder and a free port.
Every line says which process wrote it, migrations print one line, the welcome text comes last
once everything answers and stays on screen (the routine ticks and sweeps do not scroll it away),
and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PREFIXED = re.compile(r"^(web|worker|beat|inbox|services) +\|( |$)")
ROUTINE = (
    "projections.tick",
    "ledger.expire_transfers",
    "core.sweep_idempotency",
    "integration.sweep_inbox",
    "projections.catch_up_bucket",
    "projections.catch_up_pending",
)
CALM_S = 15  # beat sends the tick every 3 s and the expiry sweep every 5 s
# The test run's own services and settings: the supervisor must start its own.
NOT_INHERITED = ("DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "CELERY_BROKER_URL", "EVENTFOLD_QUEUE_PREFIX")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux's /proc children lists)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += children - found
            found |= children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Lines:
    """A child's output lines as they come, with the time each arrived."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.seen: list[tuple[float, str]] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            self.seen.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def text(self) -> list[str]:
        return [line for _, line in self.seen]

    def wait_for(self, pattern: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.text()):
                if re.search(pattern, line):
                    return i
            time.sleep(0.2)
        raise AssertionError(f"no line like {pattern!r} within {timeout:.0f} s:\n" + "\n".join(self.text()[-40:]))


def test_make_run_is_calm_says_who_speaks_and_welcomes_last(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(EVENTFOLD_DATA=str(tmp_path / "data"), PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.stack", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out = Lines(proc)
    try:
        start = out.wait_for(r"^Eventfold is running at ", timeout=300)
        time.sleep(CALM_S)
        family = descendants(proc.pid)
        lines = out.text()
        top = start - 1
        bottom = next(i for i in range(start, len(lines)) if re.fullmatch("=+", lines[i]))
        assert re.fullmatch("=+", lines[top])  # the welcome text stands out, framed
        before, banner = lines[:top], "\n".join(lines[top : bottom + 1])
        after = [line for line in lines[bottom + 1 :] if line.strip()]

        unlabelled = [line for line in before if line.strip() and not PREFIXED.match(line)]
        assert not unlabelled, unlabelled
        database = [line for line in before if "database:" in line]
        assert len(database) == 1 and re.search(r"services +\| database: migrated, \d+ migrations applied", database[0])
        assert not [line for line in before if "Applying " in line]  # no per-migration list
        assert f"Eventfold is running at http://127.0.0.1:{port}/" in banner
        assert "Log in as admin with the password " in banner
        assert after == [], f"the welcome text was scrolled by: {after[:10]}"  # it stays last
        routine = [line for line in before if any(task in line for task in ROUTINE)]
        assert not routine, routine[:5]
        assert len(family) >= 7, family  # web, worker and its pool, beat, the inbox consumer, PostgreSQL, Redis
        assert [line for line in before if line.startswith("inbox    | ")], "the inbox consumer said nothing"
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, "\n".join(out.text()[-20:])
    time.sleep(1)
    left = [pid for pid in family if alive(pid)]
    assert not left, f"processes left behind: {left}"


def test_a_taken_port_stops_make_run_with_one_sentence_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "PORT": str(port)}  # the test run's services: nothing of its own to start
        done = subprocess.run(
            [sys.executable, "-m", "app.stack", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 1
    said = [line for line in done.stdout.splitlines() if "Port" in line]
    assert said == [
        f"services | Port {port} is taken: another program (perhaps another `make run`) listens on "
        f"127.0.0.1:{port}. Stop it, or start on another port: PORT={port + 1} make run"
    ]
    assert "Traceback" not in done.stdout + done.stderr and "database:" not in done.stdout  # nothing started
