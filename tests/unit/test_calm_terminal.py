"""What `make run` prints, in pieces: routine task traffic demoted from INFO (app/core/routine.py),
one sentence for a port that is taken (app/startup.py), every line labelled (app/stack.py)."""

from __future__ import annotations

import io
import logging
import socket
import subprocess
import sys

import pytest

from app import stack, startup
from app.core.routine import RoutineTasks, quiet_routine_tasks, routine_tasks
from app.settings import CELERY_BEAT_SCHEDULE


@pytest.fixture
def celery_lines(caplog):
    """What Celery's task-traffic loggers let through, with the filter on, at INFO."""
    quiet_routine_tasks(routine_tasks(CELERY_BEAT_SCHEDULE))
    caplog.set_level(logging.INFO)
    yield caplog
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        for f in [f for f in logging.getLogger(name).filters if isinstance(f, RoutineTasks)]:
            logging.getLogger(name).removeFilter(f)


def test_the_routine_tasks_are_the_beat_schedule_and_the_catch_up():
    assert routine_tasks(CELERY_BEAT_SCHEDULE) == [
        "core.sweep_idempotency",
        "integration.sweep_inbox",
        "ledger.expire_transfers",
        "projections.catch_up_bucket",
        "projections.catch_up_pending",
        "projections.tick",
    ]


def test_routine_traffic_is_not_logged_at_info_and_other_tasks_are(celery_lines):
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "projections-safety-net", "projections.tick"
    )
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "ledger.expire_transfers", "id-1")
    logging.getLogger("celery.app.trace").info(
        "Task %(name)s[%(id)s] succeeded", {"name": "projections.tick", "id": "2"}
    )
    logging.getLogger("celery.worker.strategy").info("Task %s[%s] received", "rebuilds.slice", "id-3")
    logging.getLogger("celery.app.trace").error("Task %s[%s] raised", "projections.tick", "id-4")
    assert [r.getMessage() for r in celery_lines.records] == [
        "Task rebuilds.slice[id-3] received",
        "Task projections.tick[id-4] raised",  # a failing routine task still says so
    ]


def test_with_debug_on_the_routine_traffic_shows_at_debug(celery_lines):
    celery_lines.set_level(logging.DEBUG)
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "sweep", "core.sweep_idempotency")
    [record] = celery_lines.records
    assert record.levelname == "DEBUG"


def test_a_taken_port_is_one_sentence_naming_a_way_out():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = startup.port_problem("127.0.0.1", str(port))
    assert said is not None and said.startswith(f"Port {port} is taken") and f"PORT={port + 1} make run" in said
    assert (
        startup.port_problem("127.0.0.1", "eighty")
        == "PORT='eighty' is not a port number: set PORT to a number such as 8000."
    )
    assert startup.port_problem("127.0.0.1", "70000").startswith("PORT=70000 is not a port number")


def test_a_free_port_is_no_problem():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert startup.port_problem("127.0.0.1", str(port)) is None


def test_every_line_says_which_process_wrote_it():
    screen = io.StringIO()
    out = stack.Output(screen)
    out.say("web", "INFO:     Started server process")
    out.say("services", "database: up to date")
    out.say("inbox", "consuming eventfold.inbox")
    assert screen.getvalue().splitlines() == [
        "web      | INFO:     Started server process",
        "services | database: up to date",
        "inbox    | consuming eventfold.inbox",
    ]


def test_make_run_starts_the_inbox_consumer_beside_the_worker():
    children = stack._children()
    assert list(children) == ["web", "worker", "beat", "inbox"]
    assert children["inbox"][-2:] == ["manage.py", "consume_inbox"]


def test_the_welcome_text_stands_out_and_shows_a_new_password_once():
    first = stack._banner("8000", "pw-shown-once").splitlines()
    assert first[1] == first[-2] == "=" * len(first[1]) and "Eventfold is running at http://127.0.0.1:8000/" in first[2]
    assert "Log in as admin with the password pw-shown-once" in first
    assert "pw-shown-once" not in stack._banner("8000", "")


def test_a_set_up_step_stopped_by_ctrl_c_says_so_in_one_line_not_a_traceback():
    screen = io.StringIO()
    interrupted = subprocess.CompletedProcess(
        [sys.executable, "manage.py", "seed_demo", "--if-empty"], -2, "", "Traceback ...\nKeyboardInterrupt\n"
    )
    stack._show(stack.Output(screen), interrupted)
    assert screen.getvalue() == "services | seed_demo: stopped (Ctrl-C)\n"
    failed = subprocess.CompletedProcess([sys.executable, "manage.py", "migrate"], 1, "", "CommandError: no\n")
    stack._show(stack.Output(screen := io.StringIO()), failed)
    assert screen.getvalue() == "services | CommandError: no\n"
