"""The supervisor behind `make run` and `make test`.

    python -m app.stack run            web (ASGI), worker, beat, with demo data
    python -m app.stack test [ARGS]    the whole pytest suite (ARGS go to pytest)
    python -m app.stack manage ARGS    any manage.py command

Each starts the embedded PostgreSQL and Redis unless `DATABASE_URL` /
`REDIS_URL` are set, and stops every child it started on exit or Ctrl-C.
The embedded PostgreSQL has two roles (app/embedded.py): `migrate` runs as
the owner (DATABASE_OWNER_URL), everything else as the application role.

`run` keeps its terminal readable: each child's output comes through a pipe, every line labelled
with its process ("web      | ", "worker   | ", "beat     | ", "services | " for the embedded
services and the set-up commands); migrations print one summary line; the welcome text (URL,
login, a new admin's password once) comes last, framed, once /healthz is ok and the output has
settled. What beat sends every few seconds logs at DEBUG in the worker and beat themselves
(app/core/routine.py). A start that cannot work stops with one sentence (app/startup.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import IO, TextIO

from app import embedded, startup
from app.embedded import Services, data_dir

PYTHON = sys.executable
SERVICES = "services"  # the embedded PostgreSQL and Redis, migrations, the demo data
WIDTH = len(SERVICES)  # names padded to this: "web      | ..."
APPLIED = re.compile(r"^  Applying \S+\.\.\. OK", re.M)  # one line per migration in migrate's output
START_TIMEOUT_S = 120.0  # the welcome text waits at most this long for /healthz
QUIET_S = 1.5  # and, once /healthz is ok, for the start-up output to settle (at most half as long again)
HEALTH_TIMEOUT_S = 2.0
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an http_proxy


def manage(*args: str) -> int:
    return subprocess.call([PYTHON, "manage.py", *args])


WEB_GRACEFUL_SHUTDOWN_S = 8  # past the longest request that ends by itself (a read-your-writes wait: 5 s)


def web_processes() -> int:
    """How many uvicorn processes `make run` starts: EVENTFOLD_WEB_PROCESSES (0 means 1; text or a
    negative stops `make run` with a sentence naming it), else one per core.
    One process runs its Python on one core at a time; a second uses the other core while the
    first waits on PostgreSQL (docs/benchmarks.md, P2)."""
    return max(1, startup.number("EVENTFOLD_WEB_PROCESSES", max(1, os.cpu_count() or 1)))  # 0: one


def web_command(port: str, host: str = "127.0.0.1", app: str = "app.asgi:application") -> list[str]:
    """The web server's command line under `make run` (the tests start the same one). uvicorn
    believes X-Forwarded-For from 127.0.0.1 unless told otherwise, so any local client could pick
    its own address: proxy headers count only from the proxies in EVENTFOLD_TRUSTED_PROXIES, the
    same list the app's own address resolution uses (app/core/throttle.py). `app`: the ASGI
    application (the benchmark serves its own, which adds its minimal endpoint to this one)."""
    command = [PYTHON, "-m", "uvicorn", app, "--host", host, "--port", port, "--no-access-log"]
    # A live event stream (GET /api/events/live) never ends by itself: uvicorn would wait for it for
    # ever on shutdown. After this long it cancels what still runs (clients resume from their cursor).
    command += ["--timeout-graceful-shutdown", str(WEB_GRACEFUL_SHUTDOWN_S)]
    processes = web_processes()
    if processes > 1:  # uvicorn's supervisor starts them, all listening on the one port
        command += ["--workers", str(processes)]
    proxies = ",".join(p.strip() for p in os.environ.get("EVENTFOLD_TRUSTED_PROXIES", "").split(",") if p.strip())
    return (
        [*command, "--proxy-headers", "--forwarded-allow-ips", proxies] if proxies else [*command, "--no-proxy-headers"]
    )


def worker_command(queues: list[str], concurrency: int = 2, name: str | None = None) -> list[str]:
    """A Celery worker's command line on `queues` (already prefixed), as `make run` starts it."""
    command = [PYTHON, "-m", "celery", "-A", "app", "--quiet", "worker", "-Q", ",".join(queues)]  # --quiet: no banner
    command += ["--concurrency", str(concurrency), "--loglevel", "INFO"]
    return [*command, "-n", f"{name}@%h"] if name else command


def beat_command(schedule: str) -> list[str]:
    """The beat's command line (exactly one per deployment), its schedule kept in `schedule`."""
    return [PYTHON, "-m", "celery", "-A", "app", "--quiet", "beat", "--loglevel", "INFO", "--schedule", schedule]


def inbox_command() -> list[str]:
    """The inbox consumer's command line (app/integration: inbound messages, exactly once in effect)."""
    return [PYTHON, "manage.py", "consume_inbox"]


def _children() -> dict[str, list[str]]:
    port = os.environ.get("PORT", "8000")
    prefix = os.environ.get("EVENTFOLD_QUEUE_PREFIX", "")
    return {
        "web": web_command(port),
        "worker": worker_command([prefix + q for q in ("celery", "projections", "rebuilds")]),
        "beat": beat_command(os.path.join(os.environ.get("EVENTFOLD_DATA", ".data"), "celerybeat-schedule")),
        "inbox": inbox_command(),
    }


class Output:
    """The terminal of `make run`: every line says which process it comes from ("web      | ..."),
    one whole line at a time whichever thread writes it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()
        self.last_line = time.monotonic()

    def say(self, name: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"{name:<{WIDTH}} | {text}".rstrip() + "\n")
            self.stream.flush()
            self.last_line = time.monotonic()

    def block(self, text: str) -> None:
        """Lines of the supervisor's own that must stand out (the welcome text), unprefixed."""
        with self.lock:
            self.stream.write(text)
            self.stream.flush()

    def follow(self, name: str, pipe: IO[bytes]) -> threading.Thread:
        """Copy a child's output, line by line, with its name, until it closes."""

        def copy() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    self.say(name, raw.decode(errors="replace").rstrip())

        thread = threading.Thread(target=copy, name=f"output-{name}", daemon=True)
        thread.start()
        return thread


def welcome_due(out: Output, port: str, waited: float) -> bool:
    """Time for the welcome text: everything answers (/healthz) and the start-up output has
    settled, so that the text stays on screen. After START_TIMEOUT_S it comes anyway, with a note."""
    if waited > START_TIMEOUT_S:
        out.say(SERVICES, f"/healthz is not ok after {START_TIMEOUT_S:.0f} s: the console may not work yet")
        return True
    settled = time.monotonic() - out.last_line >= QUIET_S or waited > START_TIMEOUT_S / 2
    return settled and healthy(port)


def _banner(port: str, new_admin_password: str) -> str:
    url = f"http://127.0.0.1:{port}/"
    if new_admin_password:
        login = [
            f"Log in as admin with the password {new_admin_password}",
            '(shown this once; change it with: make manage ARGS="changepassword admin")',
        ]
    else:
        login = [
            "Log in with your console user (a fresh install made `admin` and printed its password on first start;",
            'reset it with: make manage ARGS="changepassword admin")',
        ]
    lines = [
        f"Eventfold is running at {url}  (Ctrl-C stops everything)",
        *login,
        "More users: make manage ARGS=\"create_token NAME --role viewer|operator|admin --password '...'\"",
        'Live demo traffic: make manage ARGS="seed_demo --live"',
    ]
    rule = "=" * max(len(line) for line in lines)
    return "\n".join(["", rule, *lines, rule, ""]) + "\n"


def fresh_metrics_dir() -> None:
    """Every process `make run` starts counts into one empty directory (app/core/metrics.py): none
    of the last run's processes is left, so neither are their files."""
    path = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(data_dir() / "metrics")))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def healthy(port: str) -> bool:
    """/healthz answers ok: the database, the broker and at least one worker (its heartbeat)."""
    try:
        with LOCAL.open(f"http://127.0.0.1:{port}/healthz", timeout=HEALTH_TIMEOUT_S) as answer:
            body = json.loads(answer.read())
    except (OSError, ValueError):  # not listening yet, 503, a body that is no JSON
        return False
    return body.get("status") == "ok" and body.get("workers", 0) >= 1


def setup(out: Output) -> str | None:
    """Migrations (one summary line), the demo data, the first admin: the admin's new password
    ("" if there is none), or None if a step failed (its output shown)."""
    migrated = _captured("migrate", "--noinput")
    if migrated.returncode != 0:
        _show(out, migrated)
        return None
    applied = len(APPLIED.findall(migrated.stdout))
    plural = "" if applied == 1 else "s"
    out.say(SERVICES, f"database: migrated, {applied} migration{plural} applied" if applied else "database: up to date")
    if os.path.exists(os.path.join("app", "ledger", "management", "commands", "seed_demo.py")):
        seeded = _captured("seed_demo", "--if-empty")
        _show(out, seeded)
        if seeded.returncode != 0:
            return None
    admin = _captured("ensure_admin")
    if admin.returncode != 0:
        _show(out, admin)
        return None
    return admin.stdout.strip()


def _captured(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "manage.py", *args], capture_output=True, text=True, env=_child_env())


def _show(out: Output, done: subprocess.CompletedProcess[str]) -> None:
    """A set-up command's output, labelled; for one stopped by Ctrl-C, only that."""
    if done.returncode < 0 or "\nKeyboardInterrupt" in done.stderr:
        out.say(SERVICES, f"{done.args[2]}: stopped (Ctrl-C)")
        return
    for line in (done.stdout + done.stderr).splitlines():
        if line.strip():
            out.say(SERVICES, line)


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines reach the terminal as they are written


def stop_processes(procs: list[subprocess.Popen], timeout: float = 15.0) -> None:
    """Stop children started with `start_new_session=True`, and whatever each started: SIGTERM to
    each, then, after `timeout`, SIGKILL to the process group of any still running, and to the
    group of every child that did exit: a member left behind (Celery's embedded beat, `-B`, once
    its worker was killed) would otherwise run on, sending tasks to a stack that is gone."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
        _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone: nothing was left behind
        os.killpg(pgid, signal.SIGKILL)


def run(out: Output | None = None) -> int:
    out = out or Output()
    port = os.environ.get("PORT", "8000")
    if problem := startup.port_problem("127.0.0.1", port):
        out.say(SERVICES, problem)
        return 1
    fresh_metrics_dir()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    # From here Ctrl-C only asks to stop (the set-up commands, in this terminal's process group,
    # get it themselves), so that no child is ever started and then left behind.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    new_admin_password = setup(out)
    if new_admin_password is None or stopping:
        return 1
    procs, readers = {}, []
    for name, cmd in _children().items():
        procs[name] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=_child_env()
        )
        readers.append(out.follow(name, procs[name].stdout))  # type: ignore[arg-type]
    code, started, welcomed = 0, time.monotonic(), False
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                out.say(name, f"exited with code {proc.returncode}; stopping everything")
                stopping, code = True, 1
        if not stopping and not welcomed and welcome_due(out, port, time.monotonic() - started):
            out.block(_banner(port, new_admin_password))
            welcomed = True
        time.sleep(0.3)
    stop_processes(list(procs.values()))
    for reader in readers:  # their last lines ("Warm shutdown") reach the terminal
        reader.join(timeout=2)
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "manage"}:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    if argv[0] == "run":
        out = Output()
        try:  # before any service starts
            web_processes()
        except startup.SettingError as exc:
            out.say(SERVICES, f"Eventfold cannot start: {exc}")
            return 1
        warnings.showwarning = lambda message, category, *_, **__: out.say(SERVICES, f"{category.__name__}: {message}")
        with contextlib.ExitStack() as services:
            try:
                services.enter_context(Services())
            except KeyboardInterrupt:  # Ctrl-C while the services start: they are stopped again
                return 130
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                logs = embedded.data_dir()
                out.say(SERVICES, f"could not start: {startup.explain(exc)} Their logs are under {logs}.")
                return 1
            return run(out)
    if argv[1:2] in (["benchmark"], ["bench_recovery"]) and not os.environ.get("DATABASE_URL"):
        # The benchmarks make and drop scratch schemas, which the embedded server's application
        # role may not: they run as its owner role (the speed is the same; the triggers still fire).
        os.environ.setdefault("EVENTFOLD_DB_APP_ROLE", embedded.owner_role())
    with Services():
        if argv[0] == "test":
            os.environ.setdefault("EVENTFOLD_QUEUE_PREFIX", "test.")
            with tempfile.TemporaryDirectory(prefix="eventfold-metrics-test-") as metrics:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics  # the run's own: never a `make run`'s
                return subprocess.call([PYTHON, "-m", "pytest", *argv[1:]])
        return manage(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
