import pytest

from projections import runner
from tests.conftest import wait_for


@pytest.fixture
def worker(celery_worker_process, transactional_db):
    """The test worker, once it has caught up (each transactional test starts with empty read models
    and checkpoints, while the log keeps every earlier test's events: the worker replays them)."""
    wait_for(lambda: not runner.lagging_buckets(), timeout=120, what="the worker to catch up")
    return celery_worker_process
