"""A Redis that accepts connections and never answers (hung, or gone behind a dead route without
closing its connections) holds no request for long: every Redis client gives up after
REDIS_TIMEOUT_S. The login, whose throttle counts in the cache, answers 503 with Retry-After
instead of waiting for ever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings as django_settings
from django.test import Client

from app.celery import app as celery_app


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A listening socket nobody reads from: connects succeed, replies never come."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@pytest.fixture
def throttle_on_hung_redis(settings, hung_redis) -> Iterator[None]:
    """The cache as configured, on the hung Redis; the login throttle made afresh to use it (axes
    keeps one handler per process, holding the cache it was made with)."""
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": hung_redis}}
    AxesProxyHandler.get_implementation(force=True)
    yield
    AxesProxyHandler.implementation = None


@pytest.mark.usefixtures("throttle_on_hung_redis")
def test_the_login_answers_503_soon_while_redis_hangs(transactional_db, settings):
    answers: list[int] = []
    form = {"username": "olga", "password": "a long password here"}
    login = threading.Thread(target=lambda: answers.append(Client().post("/login/", form).status_code), daemon=True)
    started = time.monotonic()
    login.start()
    login.join(timeout=10)
    assert answers == [503], "the login waited on a hung Redis"
    assert time.monotonic() - started < 4 * settings.REDIS_TIMEOUT_S + 1


def test_every_redis_client_has_a_timeout():
    timeout = django_settings.REDIS_TIMEOUT_S
    assert django_settings.CACHES["default"]["OPTIONS"]["socket_timeout"] == timeout
    [host] = django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    assert host["socket_connect_timeout"] == timeout and host["socket_timeout"] <= timeout + 5
    options = celery_app.conf.broker_transport_options
    assert options["socket_connect_timeout"] == timeout and options["socket_timeout"] <= timeout + 1
