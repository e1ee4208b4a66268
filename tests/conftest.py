import pytest
from django.db import connections

from eventstore.store import EventStore


@pytest.fixture
def store(transactional_db) -> EventStore:
    """The event store on the test database, with committed (not rolled-back) transactions,
    since the read horizon and other connections only see committed data."""
    return EventStore()


@pytest.fixture
def test_db_name(transactional_db) -> str:
    return connections["default"].settings_dict["NAME"]


@pytest.fixture(scope="session", autouse=True)
def _end_other_sessions(django_db_setup, django_db_blocker):
    """Worker threads of the API (and worker processes) keep their own connections open:
    end them before pytest-django drops the test database."""
    yield
    with django_db_blocker.unblock(), connections["default"].cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def worker_database_url() -> str:
    """A URL for the test database, for processes started by the tests."""
    from urllib.parse import quote

    s = connections["default"].settings_dict
    auth = quote(s.get("USER") or "postgres") + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    host = quote(s.get("HOST") or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process (with its beat), pointed at the test database."""
    import os
    import subprocess
    import sys
    import time

    from django.conf import settings

    from app.celery import app as celery_app

    env = dict(os.environ, DATABASE_URL=worker_database_url(), EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX)
    env.pop("TEST_DATABASE_NAME", None)
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    schedule = log.parent / "beat-schedule"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "app",
        "worker",
        "-B",
        "-s",
        str(schedule),
        "-Q",
        ",".join(settings.QUEUES.values()),
        "-c",
        "2",
        "--loglevel",
        "INFO",
        "-n",
        f"test-{os.getpid()}@%h",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[f"test-{os.getpid()}@{os.uname().nodename}"], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the test worker did not start: {log.read_text()[-3000:]}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(check, timeout: float = 15.0, what: str = "the condition"):
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
