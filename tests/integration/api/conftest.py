import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from app.core.models import ApiToken, Profile


class Api:
    """A small HTTP client for the REST API with one user's bearer token."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        out = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if self.token is not None:
            out["HTTP_AUTHORIZATION"] = f"Bearer {self.token}"
        return out

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        **headers: str,
    ):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.client.generic("POST", path, data, content_type=content_type, **self._headers(headers))

    def get(self, path: str, **params: Any):
        headers = {k: v for k, v in params.items() if k.startswith("header_")}
        query = {k: v for k, v in params.items() if not k.startswith("header_")}
        return self.client.get(path, query, **self._headers({k[7:]: v for k, v in headers.items()}))


def make_user(username: str, role: str) -> str:
    user, _ = get_user_model().objects.get_or_create(username=username)
    Profile.objects.update_or_create(user=user, defaults={"role": role})
    return ApiToken.issue(user)[1]


@pytest.fixture
def viewer(transactional_db) -> Api:
    return Api(make_user("vic", "viewer"))


@pytest.fixture
def operator(transactional_db) -> Api:
    return Api(make_user("olga", "operator"))


@pytest.fixture
def admin(transactional_db) -> Api:
    return Api(make_user("ada", "admin"))


@pytest.fixture
def anonymous(transactional_db) -> Api:
    return Api(None)


def open_account(api: Api, owner: str = "Ann Example", currency: str = "EUR", **extra: Any) -> str:
    response = api.post("/api/accounts", {"owner": owner, "currency": currency, **extra})
    assert response.status_code == 201, response.content
    return response.json()["account_id"]
