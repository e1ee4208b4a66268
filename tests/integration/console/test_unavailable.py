"""While the database (or Redis, where the login throttle counts) cannot be reached, the console's
pages and the login answer 503 with Retry-After, a page that itself needs neither, never a 500
(app/core/unavailable.py). The fault soak (tests/integration/test_fault_soak.py) meets the real
outage; here the errors a lost server raises are raised where a page or the login meets them."""

from __future__ import annotations

import psycopg
import pytest
import redis
from django.contrib.auth.backends import ModelBackend
from django.db import InterfaceError, OperationalError
from django.test import Client

from app.core import unavailable
from app.ledger import selectors
from tests.integration.console.clients import console_client


def lost(*args: object, **kwargs: object) -> None:
    raise OperationalError("consuming input failed: server closed the connection unexpectedly")


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("server closed the connection"),
        InterfaceError("connection already closed"),
        psycopg.OperationalError("the connection is lost"),
    ],
)
def test_a_console_page_answers_503_while_the_database_is_away(transactional_db, monkeypatch, error):
    client = console_client("olga", "operator")

    def away(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(selectors, "account_list", away)
    response = client.get("/accounts/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "The database cannot be reached" in response.content.decode()


def test_the_login_answers_503_while_the_database_is_away(transactional_db, monkeypatch):
    monkeypatch.setattr(ModelBackend, "authenticate", lost)
    client = Client()
    response = client.post("/login/", {"username": "olga", "password": "a long password here"})
    assert response.status_code == 503 and response["Retry-After"] == "5"


def test_the_login_answers_503_while_redis_is_away(transactional_db, monkeypatch):
    def no_redis(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setattr("django.core.cache.backends.redis.RedisCache.get", no_redis)
    monkeypatch.setattr("django.core.cache.backends.redis.RedisCache.get_many", no_redis)
    client = Client()
    response = client.post("/login/", {"username": "olga", "password": "a long password here"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "Redis cannot be reached" in response.content.decode()


def test_other_errors_are_left_alone():
    assert unavailable.part_down(ValueError("a bug")) is None
    wrapped = RuntimeError("in a handler")
    wrapped.__cause__ = OperationalError("lost")
    assert unavailable.part_down(wrapped) == "The database"


@pytest.mark.parametrize("page", ["/streams/", "/catalog/"])
def test_pages_whose_counts_the_cache_shares_are_shown_while_redis_is_away(transactional_db, monkeypatch, page):
    def no_redis(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Error 2 connecting to unix socket: /run/redis.sock. No such file or directory.")

    monkeypatch.setattr("django.core.cache.backends.redis.RedisCache.get_or_set", no_redis)
    response = console_client("vic", "viewer").get(page)
    assert response.status_code == 200


def test_a_login_whose_session_save_meets_the_lost_database_answers_503(transactional_db, monkeypatch):
    """The session is saved after the view, in the middleware, where Django reports any database
    error as "the session was deleted" (400). The fault soak met it when PostgreSQL restarted there."""
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session

    User.objects.create_user("olga", password="a long password here")
    saved = Session.save

    def save(self: Session, *args: object, **kwargs: object) -> None:
        if kwargs.get("force_update"):  # the save at the end of the request, not the login's own
            raise OperationalError("consuming input failed: server closed the connection unexpectedly")
        saved(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "save", save)
    response = Client().post("/login/", {"username": "olga", "password": "a long password here"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "The database cannot be reached" in response.content.decode()
