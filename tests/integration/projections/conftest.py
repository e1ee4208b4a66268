import os
import time

import pytest
from django.conf import settings

from app.celery import app as celery_app
from projections import runner
from tests.conftest import wait_for


def _set_consuming(worker_name: str, consuming: bool) -> None:
    for queue in settings.QUEUES.values():
        control = celery_app.control.add_consumer if consuming else celery_app.control.cancel_consumer
        control(queue, destination=[worker_name], reply=True)


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """The test worker, once it has caught up (each transactional test starts with empty read models
    and checkpoints, while the log keeps every earlier test's events: the worker replays them).

    Afterwards it stops consuming and finishes what it holds, so that the test database's flush
    (TRUNCATE) never meets a runner's transaction halfway."""
    name = f"test-{os.getpid()}@{os.uname().nodename}"
    _set_consuming(name, True)
    wait_for(lambda: not runner.lagging_buckets(), timeout=120, what="the worker to catch up")
    yield celery_worker_process
    _set_consuming(name, False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        active = celery_app.control.inspect(destination=[name], timeout=1).active() or {}
        if not any(active.values()):
            break
        time.sleep(0.1)
