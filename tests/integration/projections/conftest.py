import os
import time

import pytest
from django.conf import settings

from app.celery import app as celery_app
from projections import runner, status
from projections.base import projection_registry
from tests.conftest import wait_for

IDLE_TIMEOUT_S = 30


def _set_consuming(worker_name: str, consuming: bool) -> None:
    for queue in settings.QUEUES.values():
        control = celery_app.control.add_consumer if consuming else celery_app.control.cancel_consumer
        control(queue, destination=[worker_name], reply=True)


def _stop_consuming(worker_name: str) -> None:
    """Stop taking tasks, then wait until the tasks already taken have ended."""
    _set_consuming(worker_name, False)
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while time.monotonic() < deadline:
        inspect = celery_app.control.inspect(destination=[worker_name], timeout=1)
        held = [*(inspect.active() or {}).values(), *(inspect.reserved() or {}).values()]
        held += (inspect.scheduled() or {}).values()  # re-queued with a countdown
        if not any(held):
            return
        time.sleep(0.1)


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """The test worker, consuming while the test runs, with every projection and process manager
    starting at the log's head: each transactional test starts with empty read models and
    checkpoints while the log keeps every earlier test's events, and the worker applies only
    what the test appends. (A test comparing read models with a replay of the whole log calls
    `replay_whole_log` first.)

    Before, it is idle while the checkpoints move (the session's first test finds it busy with
    what earlier tests queued); afterwards it stops consuming and finishes what it holds, so that
    the test database's flush (TRUNCATE) never meets a runner's transaction halfway."""
    name = f"test-{os.getpid()}@{os.uname().nodename}"
    _stop_consuming(name)
    status.start_at_head()
    _set_consuming(name, True)
    wait_for(lambda: not runner.lagging_buckets(), timeout=120, what="the worker to catch up")
    yield celery_worker_process
    _stop_consuming(name)


@pytest.fixture
def quiet_worker(celery_worker_process, transactional_db):
    """The test worker (its beat included) takes no tasks while the test runs: for a test that
    catches up in its own process and must not find buckets `busy` or caught up by the worker.
    The next test that needs the worker (`worker`) has it consume again."""
    _stop_consuming(f"test-{os.getpid()}@{os.uname().nodename}")


def replay_whole_log() -> None:
    """Every projection back to position zero (as an operator's reset does), then wait until the
    worker has replayed the whole test log into the read models: as `verify_projections` will."""
    for projection in projection_registry.all():
        status.reset(projection.name, 0)
    wait_for(lambda: not runner.lagging_buckets(), timeout=120, what="the worker to replay the log")
