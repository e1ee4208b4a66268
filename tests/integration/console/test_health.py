"""/healthz (docs/api.md): 200 when the database, the broker and at least one worker answer; 503
naming the failing part (and Retry-After) otherwise. The dashboard shows the same check."""

from __future__ import annotations

import pytest

from app.celery import app as celery_app
from app.core import health
from tests.integration.projections.conftest import worker  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_checks():
    health._memo.clear()  # checks are remembered for a few seconds per process
    yield
    health._memo.clear()


@pytest.mark.usefixtures("worker")  # consuming only while the test runs (never during the database flush)
def test_healthy_with_the_sessions_worker(client):
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["broker"] == "ok"
    assert body["workers"] >= 1


def test_a_broker_that_does_not_answer_is_named(client, transactional_db, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:1/0")  # nothing listens there
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"  # told when to look again, as every 503 is
    assert response.json()["failing"] == ["broker"]
    assert response.json()["broker"] == "unavailable"


def test_no_worker_answering_is_named(client, transactional_db, monkeypatch):
    monkeypatch.setattr(celery_app.control, "ping", lambda **kwargs: [])
    response = client.get("/healthz")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["failing"] == ["workers"]


def test_checks_are_remembered_for_a_few_seconds(transactional_db, monkeypatch):
    calls = []
    monkeypatch.setattr(celery_app.control, "ping", lambda **kwargs: calls.append(1) or [{"w@h": {"ok": "pong"}}])
    assert health.health().workers == ["w@h"]
    assert health.health().ok
    assert len(calls) == 1
