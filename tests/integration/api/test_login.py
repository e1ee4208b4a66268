"""The console's login cannot be brute-forced (issue 12, point 6): failures count per username
(as Django's login normalises it) and real client address; a stranger elsewhere cannot lock a user
out; one address cannot spray many usernames; a forwarded address counts only from a trusted
proxy. The failure counters live in Redis across test runs: every test makes its own names and
addresses."""

from __future__ import annotations

import io
import secrets
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from app.core.models import ApiToken, Profile
from app.stack import web_command

PASSWORD = "right-password-123"


def fresh_address() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def new_user(prefix: str = "lou") -> str:
    name = f"{prefix}{secrets.token_hex(4)}"
    get_user_model().objects.create_user(name, password=PASSWORD)
    return name


def log_in(client: Client, username: str, password: str, **extra: str) -> int:
    return client.post("/login/", {"username": username, "password": password}, **extra).status_code


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 7


def test_429_after_too_many_failed_logins_and_not_for_a_stranger_elsewhere(transactional_db):
    name = new_user()
    client = Client(REMOTE_ADDR=fresh_address())
    assert [log_in(client, name, "wrong") for _ in range(4)] == [200, 200, 429, 429]
    blocked = client.post("/login/", {"username": name, "password": PASSWORD})
    assert blocked.status_code == 429
    assert b"Too many failed attempts" in blocked.content and b'name="username"' in blocked.content
    assert "_auth_user_id" not in client.session
    # the guesses came from that address: the user logs in from their own
    assert log_in(Client(REMOTE_ADDR=fresh_address()), name, PASSWORD) == 302


def test_a_success_before_the_limit_is_a_login(transactional_db):
    name = new_user()
    client = Client(REMOTE_ADDR=fresh_address())
    assert [log_in(client, name, "wrong") for _ in range(2)] == [200, 200]
    assert log_in(client, name, PASSWORD) == 302


def test_spellings_that_log_in_as_the_same_user_share_its_failures(transactional_db):
    name = new_user("admin")
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)  # fullwidth: NFKC gives name
    client = Client(REMOTE_ADDR=fresh_address())
    for spelling in (wide, f" {name} ", name.upper()):
        log_in(client, spelling, "wrong")
    assert log_in(client, name, PASSWORD) == 429


def test_one_address_cannot_spray_many_usernames(transactional_db):
    names = [new_user() for _ in range(4)]
    client = Client(REMOTE_ADDR=fresh_address())
    statuses = [log_in(client, name, "wrong") for name in names for _ in range(2)]  # under 3 per username
    assert statuses == [200] * 6 + [429, 429]  # the 7th failure from the address locks it
    assert log_in(client, new_user(), PASSWORD) == 429
    assert log_in(Client(REMOTE_ADDR=fresh_address()), names[0], PASSWORD) == 302


def test_the_lock_ends_after_the_cool_off(transactional_db, settings):
    settings.LOGIN_COOLOFF_S = 1
    name = new_user()
    client = Client(REMOTE_ADDR=fresh_address())
    assert [log_in(client, name, "wrong") for _ in range(3)] == [200, 200, 429]
    time.sleep(1.5)
    assert log_in(client, name, PASSWORD) == 302


def test_a_forwarded_address_from_an_untrusted_client_is_ignored(transactional_db):
    name = new_user()
    client = Client(REMOTE_ADDR=fresh_address())
    statuses = [log_in(client, name, "wrong", HTTP_X_FORWARDED_FOR=fresh_address()) for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_behind_a_trusted_proxy_each_client_counts_on_its_own(transactional_db, settings):
    settings.TRUSTED_PROXIES = ["192.0.2.0/24"]
    name = new_user()
    proxy = Client(REMOTE_ADDR="192.0.2.7")
    guesser, owner = fresh_address(), fresh_address()
    # the proxy appends the address it saw; whatever a client put in front of it is not believed
    forged = {"HTTP_X_FORWARDED_FOR": f"{fresh_address()}, {guesser}, 192.0.2.8"}
    assert [log_in(proxy, name, "wrong", **forged) for _ in range(3)] == [200, 200, 429]
    assert log_in(proxy, name, PASSWORD, HTTP_X_FORWARDED_FOR=f"{guesser}, 192.0.2.8") == 429
    assert log_in(proxy, name, PASSWORD, HTTP_X_FORWARDED_FOR=owner) == 302


def test_bearer_tokens_are_not_affected_by_a_locked_login(transactional_db):
    name = new_user()
    user = get_user_model().objects.get(username=name)
    Profile.objects.create(user=user, role="viewer")
    token = ApiToken.issue(user)[1]
    address = fresh_address()
    client = Client(REMOTE_ADDR=address)
    assert [log_in(client, name, "wrong") for _ in range(3)][-1] == 429
    api = Client(REMOTE_ADDR=address).get("/api/accounts", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.status_code == 200


def test_the_web_servers_command_believes_forwarded_headers_only_from_the_trusted_proxies(monkeypatch):
    monkeypatch.delenv("EVENTFOLD_TRUSTED_PROXIES", raising=False)
    assert "--no-proxy-headers" in web_command("8000")
    monkeypatch.setenv("EVENTFOLD_TRUSTED_PROXIES", " 10.1.0.0/16, 192.0.2.7 ")
    command = web_command("8000")
    assert "--no-proxy-headers" not in command
    assert command[command.index("--forwarded-allow-ips") + 1] == "10.1.0.0/16,192.0.2.7"


def test_an_operator_lifts_a_lock_at_once(transactional_db):
    name = new_user()
    address = fresh_address()
    client = Client(REMOTE_ADDR=address)
    assert [log_in(client, name, "wrong") for _ in range(3)][-1] == 429
    call_command("axes_reset_ip_username", address, name.upper(), stdout=io.StringIO())
    assert log_in(client, name, PASSWORD) == 302
    sprayed = [log_in(Client(REMOTE_ADDR=address), new_user(), "wrong") for _ in range(7)]
    assert sprayed[-1] == 429 and log_in(Client(REMOTE_ADDR=address), name, PASSWORD) == 429
    call_command("axes_reset_ip", address, stdout=io.StringIO())
    assert log_in(Client(REMOTE_ADDR=address), name, PASSWORD) == 302


def test_an_ipv6_client_cannot_take_a_fresh_address_from_its_block_for_each_try(transactional_db):
    name = new_user()
    block = f"2001:db8:{secrets.randbelow(65535):x}:{secrets.randbelow(65535):x}"
    statuses = [log_in(Client(REMOTE_ADDR=f"{block}::{i + 1:x}"), name, "wrong") for i in range(3)]
    assert statuses == [200, 200, 429]
    assert log_in(Client(REMOTE_ADDR=f"2001:db8:ffff:{secrets.randbelow(65535):x}::1"), name, PASSWORD) == 302
