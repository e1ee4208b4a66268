"""The supervisor behind `make run` and `make test`.

    python -m app.stack run            web (ASGI), worker, beat, with demo data
    python -m app.stack test [ARGS]    the whole pytest suite (ARGS go to pytest)
    python -m app.stack manage ARGS    any manage.py command

Each starts the embedded PostgreSQL and Redis unless `DATABASE_URL` /
`REDIS_URL` are set, and stops every child it started on exit or Ctrl-C.
The embedded PostgreSQL has two roles (app/embedded.py): `migrate` runs as
the owner (DATABASE_OWNER_URL), everything else as the application role.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from app.embedded import Services

PYTHON = sys.executable


def manage(*args: str) -> int:
    return subprocess.call([PYTHON, "manage.py", *args])


def web_command(port: str, host: str = "127.0.0.1") -> list[str]:
    """The web server's command line under `make run` (the tests start the same one). uvicorn
    believes X-Forwarded-For from 127.0.0.1 unless told otherwise, so any local client could pick
    its own address: proxy headers count only from the proxies in EVENTFOLD_TRUSTED_PROXIES, the
    same list the app's own address resolution uses (app/core/throttle.py)."""
    command = [PYTHON, "-m", "uvicorn", "app.asgi:application", "--host", host, "--port", port, "--no-access-log"]
    proxies = ",".join(p.strip() for p in os.environ.get("EVENTFOLD_TRUSTED_PROXIES", "").split(",") if p.strip())
    return (
        [*command, "--proxy-headers", "--forwarded-allow-ips", proxies] if proxies else [*command, "--no-proxy-headers"]
    )


def _children() -> dict[str, list[str]]:
    port = os.environ.get("PORT", "8000")
    prefix = os.environ.get("EVENTFOLD_QUEUE_PREFIX", "")
    queues = ",".join(prefix + q for q in ("celery", "projections", "rebuilds"))
    return {
        "web": web_command(port),
        "worker": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "app",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            "2",
            "--loglevel",
            "INFO",
        ],
        "beat": [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "app",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            os.path.join(os.environ.get("EVENTFOLD_DATA", ".data"), "celerybeat-schedule"),
        ],
    }


def _banner(port: str, new_admin_password: str) -> str:
    url = f"http://127.0.0.1:{port}/"
    if new_admin_password:
        login = (
            f"Log in as admin with the password {new_admin_password}\n"
            '(shown this once; change it with: make manage ARGS="changepassword admin")'
        )
    else:
        login = (
            "Log in with your console user (a fresh install made `admin` and printed its password on first start;\n"
            'reset it with: make manage ARGS="changepassword admin")'
        )
    more = "More users: make manage ARGS=\"create_token NAME --role viewer|operator|admin --password '...'\""
    traffic = 'Live demo traffic: make manage ARGS="seed_demo --live"'
    return f"\nEventfold is running at {url}  (Ctrl-C stops everything)\n{login}\n{more}\n{traffic}\n"


def run() -> int:
    if manage("migrate", "--noinput") != 0:
        return 1
    if os.path.exists(os.path.join("app", "ledger", "management", "commands", "seed_demo.py")) and (
        manage("seed_demo", "--if-empty") != 0
    ):
        return 1
    admin = subprocess.run([PYTHON, "manage.py", "ensure_admin"], capture_output=True, text=True)
    if admin.returncode != 0:
        print(admin.stderr, file=sys.stderr)
        return 1
    procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in _children().items()}
    port = os.environ.get("PORT", "8000")
    print(_banner(port, admin.stdout.strip()), flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with code {proc.returncode}; stopping", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.3)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "manage"}:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    with Services():
        if argv[0] == "run":
            return run()
        if argv[0] == "test":
            os.environ.setdefault("EVENTFOLD_QUEUE_PREFIX", "test.")
            return subprocess.call([PYTHON, "-m", "pytest", *argv[1:]])
        return manage(*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
