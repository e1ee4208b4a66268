"""Requests generated from /api/openapi.json (Schemathesis, on Hypothesis) against the real ASGI
server, as a viewer and as an operator: whatever comes in, no answer is a 5xx, and every answer
matches what the schema says of it (status, content type, body, headers).

Bounded and repeatable: a fixed number of examples per operation, derandomized."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.api.api import api
from tests.integration.api.conftest import make_user

EXAMPLES = 15  # per operation and role


# The document /api/openapi.json serves, made in-process (Django is set up before collection); the
# requests go to the live server.
# The live stream (GET /api/events/live) never ends by design: tests/integration/api/test_live_events.py
# drives it, bad input included.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(api.get_openapi_schema(), default=str))).exclude(
    path="/api/events/live"
)
generated = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# Every built-in check but one: a cursor or an Idempotency-Key that the schema can only describe
# as "a string" is refused with 422 when it is not one of ours, which is right.
CHECKS = {"excluded_checks": [positive_data_acceptance]}


@pytest.fixture
def viewer_token() -> str:
    return make_user("generated-viewer", "viewer")


@pytest.fixture
def operator_token() -> str:
    return make_user("generated-operator", "operator")


@pytest.mark.django_db(transaction=True)  # the mark, not a fixture asked for at run time
@schema.parametrize()
@generated
def test_as_a_viewer_no_answer_is_a_5xx_or_outside_the_schema(case, server, viewer_token):
    case.call_and_validate(base_url=server, headers={"Authorization": f"Bearer {viewer_token}"}, **CHECKS)


@pytest.mark.django_db(transaction=True)  # the mark, not a fixture asked for at run time
@schema.parametrize()
@generated
def test_as_an_operator_no_answer_is_a_5xx_or_outside_the_schema(case, server, operator_token):
    case.call_and_validate(base_url=server, headers={"Authorization": f"Bearer {operator_token}"}, **CHECKS)
