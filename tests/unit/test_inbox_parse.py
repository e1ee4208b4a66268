"""The inbox's parsing of an inbound message: what is refused, with which reason, and that a
refusal's detail never quotes what the message carried."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from app.integration.inbox import Received, Refused, command_id, parse
from app.ledger.inbound import PAYMENT_RECEIVED

ACCOUNT = str(uuid4())


def message(
    body: object = None, *, raw: bytes | None = None, message_id: str | None = "m-1", **headers: object
) -> Received:
    payload = {"account_id": ACCOUNT, "amount": 1250, "currency": "EUR"} if body is None else body
    return Received(
        message_id=message_id,
        routing_key=PAYMENT_RECEIVED,
        headers=headers,
        body=raw if raw is not None else json.dumps(payload).encode(),
    )


def reason(msg: Received) -> Refused:
    with pytest.raises(Refused) as refused:
        parse(msg)
    return refused.value


def test_a_payment_is_parsed_with_a_command_id_derived_from_its_message_id():
    handler, body, delivery = parse(message(correlation_id=None))
    assert handler.name == PAYMENT_RECEIVED
    assert (str(body.account_id), body.amount, body.currency, body.reference) == (ACCOUNT, 1250, "EUR", "")
    assert delivery.command_id == command_id("m-1") == parse(message())[2].command_id
    assert command_id("m-2") != delivery.command_id


def test_the_type_header_names_the_handler_before_the_routing_key():
    assert parse(message(type=PAYMENT_RECEIVED))[0].name == PAYMENT_RECEIVED
    refused = reason(message(type="payments.refund_issued.v1"))
    assert refused.reason == "unknown_type"


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        (message(message_id=None), "missing_message_id"),
        (message(message_id="  "), "missing_message_id"),
        (message(message_id="a\x00b"), "invalid_message_id"),
        (message(message_id="x" * 256), "invalid_message_id"),
        (message(raw=b"{not json"), "invalid_json"),
        (message(raw=b"\xff\xfe"), "invalid_json"),
        (message(raw=b"x" * 70_000), "too_large"),
        (message({"account_id": ACCOUNT, "currency": "EUR"}), "validation_error"),
        (message({"account_id": "not-a-uuid", "amount": 5, "currency": "EUR"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": 0, "currency": "EUR"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": "12", "currency": "EUR"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": 1.5, "currency": "EUR"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": True, "currency": "EUR"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": 5, "currency": "euro"}), "validation_error"),
        (message({"account_id": ACCOUNT, "amount": 5, "currency": "EUR", "reference": "a\x00"}), "validation_error"),
        (message([1, 2]), "validation_error"),
    ],
)
def test_what_cannot_be_handled_is_refused_with_its_reason(msg, code):
    assert reason(msg).reason == code


def test_a_refusal_names_the_fields_never_their_content():
    secret = "Ann Example's payment"
    refused = reason(message({"account_id": secret, "amount": -1, "currency": "EUR"}))
    assert "account_id" in refused.detail and "amount" in refused.detail
    assert secret not in refused.detail


def test_a_producer_may_add_fields():
    assert parse(message({"account_id": ACCOUNT, "amount": 5, "currency": "EUR", "payer_iban": "x"}))[1].amount == 5
