from uuid import uuid4

from django.contrib.auth import get_user_model
from django.test import Client


def test_429_after_too_many_failed_logins(transactional_db, settings):
    settings.LOGIN_MAX_FAILURES = 3
    name = f"lou-{uuid4().hex[:8]}"  # the failure counters live in Redis, across test runs
    get_user_model().objects.create_user(name, password="right-password-123")
    client = Client(REMOTE_ADDR="10.9.8.7")
    statuses = [client.post("/login/", {"username": name, "password": "wrong"}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    blocked = client.post("/login/", {"username": name, "password": "right-password-123"})
    assert blocked.status_code == 429 and b"Too many failed attempts" in blocked.content
    other = Client(REMOTE_ADDR="10.9.8.8").post("/login/", {"username": name, "password": "right-password-123"})
    assert other.status_code == 302  # another address is not blocked
