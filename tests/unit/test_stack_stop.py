"""app.stack.stop_processes ends a child and whatever it started: Celery's embedded beat (`-B`) is a process
of the worker's own, left running when the worker is gone unless its whole group is stopped (one
was found still sending ticks long after a benchmark had ended)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from app.stack import stop_processes

# A parent that starts a child in its own process group, says the child's pid, and waits.
PARENT = """
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def _started(kind: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, kind], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_child_left_behind_by_a_parent_that_stopped_is_stopped_too() -> None:
    proc, child = _started("polite")
    assert not _gone(child, within=0.2)
    stop_processes([proc], timeout=5)
    assert proc.returncode is not None
    assert _gone(child), "the parent's child outlived stop()"


def test_a_parent_that_ignores_sigterm_is_killed_with_its_group_after_the_timeout() -> None:
    proc, child = _started("stubborn")
    started = time.monotonic()
    stop_processes([proc], timeout=1)
    assert 0.9 <= time.monotonic() - started < 10
    assert proc.returncode is not None and _gone(child)
