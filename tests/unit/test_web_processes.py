"""`make run`'s web server runs EVENTFOLD_WEB_PROCESSES uvicorn processes, one per core by default
(app/stack.py web_command)."""

from __future__ import annotations

import os

from app.stack import web_command, web_processes


def workers(command: list[str]) -> int:
    return int(command[command.index("--workers") + 1]) if "--workers" in command else 1


def test_one_process_per_core_by_default(monkeypatch):
    monkeypatch.delenv("EVENTFOLD_WEB_PROCESSES", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert web_processes() == 3
    assert workers(web_command("8000")) == 3


def test_the_setting_sizes_it(monkeypatch):
    monkeypatch.setenv("EVENTFOLD_WEB_PROCESSES", "1")
    assert "--workers" not in web_command("8000")  # one process: uvicorn serves it itself
    monkeypatch.setenv("EVENTFOLD_WEB_PROCESSES", "4")
    assert workers(web_command("8000")) == 4
    monkeypatch.setenv("EVENTFOLD_WEB_PROCESSES", "0")
    assert web_processes() == 1


def test_the_benchmark_serves_its_own_application_with_the_same_command(monkeypatch):
    monkeypatch.setenv("EVENTFOLD_WEB_PROCESSES", "2")
    real, bench = web_command("8000"), web_command("8000", app="bench.asgi:application")
    assert bench == [part if part != "app.asgi:application" else "bench.asgi:application" for part in real]
