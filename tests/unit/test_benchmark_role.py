"""`make benchmark` on the embedded services runs as the embedded server's owner role: the
benchmarks make and drop scratch schemas, which the application role may not (app/stack.py)."""

from __future__ import annotations

import contextlib
import os

import pytest

from app import embedded, stack


@pytest.fixture
def seen(monkeypatch) -> list[str | None]:
    """The application role each `manage` call would run as; the services are not started."""
    roles: list[str | None] = []
    monkeypatch.setattr(stack, "Services", contextlib.nullcontext)
    monkeypatch.setattr(stack, "manage", lambda *args: roles.append(os.environ.get("EVENTFOLD_DB_APP_ROLE")) or 0)
    monkeypatch.delenv("EVENTFOLD_DB_APP_ROLE", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return roles


def test_the_benchmarks_run_as_the_owner_role_on_the_embedded_server(seen):
    assert stack.main(["manage", "benchmark", "--workloads", "W1"]) == 0
    assert seen == [embedded.owner_role()]


def test_other_commands_keep_the_application_role(seen):
    assert stack.main(["manage", "verify_projections"]) == 0
    assert seen == [None]


def test_an_outside_database_is_left_as_given(seen, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://bench@127.0.0.1/eventfold")
    assert stack.main(["manage", "benchmark"]) == 0
    assert seen == [None]
