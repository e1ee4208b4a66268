import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from app.stack import stop_processes, worker_command
from eventstore.roles import OWNER_ALIAS
from eventstore.store import EventStore


@pytest.fixture
def store(transactional_db) -> EventStore:
    """The event store on the test database, with committed (not rolled-back) transactions,
    since the read horizon and other connections only see committed data."""
    return EventStore()


@pytest.fixture
def test_db_name(transactional_db) -> str:
    return connections["default"].settings_dict["NAME"]


@pytest.fixture(scope="session")
def django_db_setup(
    request,
    django_test_environment,
    django_db_blocker,
    django_db_keepdb,
    django_db_createdb,
    django_db_modify_db_settings,
):
    """The test database (only for tests that use one). With two roles (DATABASE_OWNER_URL, as the
    embedded server has), the owner role creates and migrates it and the tests run as the
    application role, as deployed (docs/deployment.md, "The database roles"); with one, as pytest-django
    does. Worker threads of the API (and worker processes) keep their own connections open: end
    them before the database is dropped."""
    from django.test.utils import setup_databases, teardown_databases

    keepdb = django_db_keepdb and not django_db_createdb
    verbosity = request.config.option.verbose
    owner = connections[OWNER_ALIAS] if OWNER_ALIAS in settings.DATABASES else None
    with django_db_blocker.unblock():
        if owner is None:
            created = setup_databases(verbosity=verbosity, interactive=False, keepdb=keepdb, aliases={"default"})
        else:
            live_name = owner.settings_dict["NAME"]
            owner.creation.create_test_db(verbosity=verbosity, autoclobber=True, keepdb=keepdb, serialize=False)
            connections["default"].creation.set_as_test_mirror(owner.settings_dict)
    yield
    with django_db_blocker.unblock():
        with (owner or connections["default"]).cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        if django_db_keepdb:
            return
        if owner is None:
            teardown_databases(created, verbosity=verbosity)
        else:
            connections["default"].close()
            owner.creation.destroy_test_db(live_name, verbosity=verbosity)


@contextmanager
def owner_cursor() -> Iterator[Any]:
    """A cursor (autocommit) with the rights of the role that owns the log, on the test database:
    for tests that change the schema of the log itself (a test trigger, ANALYZE). With two roles
    (the embedded server) its own psycopg connection as the owner, since the tests' connection is
    the application role's and the `owner` alias is closed to tests; with one, the tests' own."""
    if OWNER_ALIAS not in settings.DATABASES:
        with connections["default"].cursor() as cur:
            yield cur
        return
    s = settings.DATABASES[OWNER_ALIAS]
    parts = {"dbname": connections["default"].settings_dict["NAME"], "user": s["USER"], "password": s["PASSWORD"]}
    parts.update(host=s["HOST"], port=str(s["PORT"] or ""))
    with psycopg.connect(**{k: v for k, v in parts.items() if v}, autocommit=True) as conn, conn.cursor() as cur:
        yield cur


def worker_database_url() -> str:
    """A URL for the test database, for processes started by the tests."""
    from urllib.parse import quote

    s = connections["default"].settings_dict
    auth = quote(s.get("USER") or "postgres") + (f":{quote(s['PASSWORD'])}" if s.get("PASSWORD") else "")
    host = quote(s.get("HOST") or "", safe="")
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}"


def start_worker(name: str, log: Path | None = None, *, beat_schedule: Path | None = None) -> subprocess.Popen:
    """A real Celery worker process named `name` on the test queues, pointed at the test database
    (its connections carry `name` as application_name); with a beat when given a schedule file."""
    from app.celery import app as celery_app

    env = dict(
        os.environ, DATABASE_URL=worker_database_url(), EVENTFOLD_QUEUE_PREFIX=settings.QUEUE_PREFIX, PGAPPNAME=name
    )
    env.pop("TEST_DATABASE_NAME", None)
    cmd = worker_command(list(settings.QUEUES.values()), 2, name)
    if beat_schedule is not None:
        cmd += ["-B", "-s", str(beat_schedule)]
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[f"{name}@{os.uname().nodename}"], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log else ""
            raise RuntimeError(f"worker {name} did not start: {tail}")
    return proc


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process (with its beat), pointed at the test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc = start_worker(f"test-{os.getpid()}", log, beat_schedule=log.parent / "beat-schedule")
    yield proc
    stop_processes([proc], timeout=20)  # with its embedded beat


def wait_for(check, timeout: float = 15.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def pytest_collection_modifyitems(config, items):
    """Browser tests last: Playwright keeps an event loop running in the main thread while a
    browser is open, which Django's test client (async views) cannot run beside."""
    items.sort(key=lambda item: "/e2e/" in str(item.path).replace("\\", "/"))


# -- the brokers integration messages travel on -----------------------------------------------------
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_url() -> str | None:
    """AMQP_URL, or a RabbitMQ at the default local address if one answers; else None."""
    from kombu import Connection

    url = os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception:  # any failure to connect means: no RabbitMQ here
        return None
    return url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A real RabbitMQ for the tests that need one. CI has one (and `.ci/run` says so by setting
    AMQP_URL): there a missing RabbitMQ fails the test; on a machine without one it is skipped,
    saying how to run it."""
    url = rabbitmq_url()
    if url is None:
        said = f"no RabbitMQ at {os.environ.get('AMQP_URL') or DEFAULT_AMQP_URL}: start one or set AMQP_URL"
        if os.environ.get("CI"):
            pytest.fail(said)
        pytest.skip(said)
    return url


@pytest.fixture(params=["redis", "rabbitmq"])
def integration_broker(request, settings) -> str:
    """Each transport the integration messages support, in turn: the Redis the stack already uses
    (what `make run` gives a fresh machine) and RabbitMQ (AMQP_URL). Sets INTEGRATION_BROKER_URL
    for the test and returns it; a test starting worker processes passes it on in their env."""
    if request.param == "rabbitmq":
        url = request.getfixturevalue("amqp_url")
    else:
        url = settings.INTEGRATION_BROKER_URL if not settings.AMQP_URL else _redis_broker_url()
    settings.INTEGRATION_BROKER_URL = url
    return url


def _redis_broker_url() -> str:
    redis_url = settings.REDIS_URL
    return "redis+socket://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url


@pytest.fixture(scope="session", autouse=True)
def integration_exchange() -> Iterator[str]:
    """Every process of this test run (the test process, its workers, its `manage.py` runs)
    publishes integration events to an exchange of the run's own, never to `eventfold` on a
    broker other test runs share; deleted at the end. Tests that consume set one of their own."""
    from kombu import Connection, Exchange

    name = f"test.{uuid.uuid4().hex}"
    os.environ["EVENTFOLD_EXCHANGE"] = settings.EVENTFOLD_EXCHANGE = name
    yield name
    try:
        with Connection(settings.INTEGRATION_BROKER_URL, connect_timeout=2) as conn:
            Exchange(name, type="topic")(conn.default_channel).delete()
    except Exception:  # a broker that is away now: nothing to tidy up there
        pass
