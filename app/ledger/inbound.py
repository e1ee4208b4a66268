"""The ledger's inbound messages (app/integration/inbox.py): what other services tell it.

"External payment received" (`payments.payment_received.v1`) becomes a deposit on the account it
names, sent as the actor `inbox:payments` through the channel "inbox", with a command id derived
from the message id (a redelivery appends nothing). A payment the ledger cannot take (an unknown
or closed account, another currency) is refused: the message is parked as a dead letter with
that reason, not tried again. Backpressure gives the message back to the queue, untried.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from app.integration.inbox import Busy, Delivery, Refused, register
from app.ledger import commands, handlers
from app.ledger.domain import errors
from app.ledger.domain.events import MAX_AMOUNT, TEXT_MAX, CurrencyCode
from eventstore.inputs import storable

PAYMENT_RECEIVED = "payments.payment_received.v1"
ACTOR = "inbox:payments"


class PaymentReceived(BaseModel):
    """The body of `payments.payment_received.v1`."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a producer may add fields: a minor version

    account_id: UUID
    amount: Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT)]
    currency: CurrencyCode
    reference: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=TEXT_MAX), AfterValidator(storable)
    ] = ""


@register(PAYMENT_RECEIVED, PaymentReceived)
def payment_received(payment: PaymentReceived, delivery: Delivery) -> bool:
    """Deposit the payment; True if it appended (False: this message's deposit is in the log)."""
    sender = commands.Sender(actor=ACTOR, command_id=delivery.command_id)
    correlation_id = str(delivery.correlation_id or delivery.command_id)
    try:
        with structlog.contextvars.bound_contextvars(correlation_id=correlation_id):
            result = commands.send(
                handlers.account_deposit,
                sender,
                account_id=payment.account_id,
                amount=payment.amount,
                reference=payment.reference,
                channel="inbox",
                currency=payment.currency,
            )
    except commands.Backpressure:
        raise Busy("the read models are too far behind") from None
    except commands.NotFound:
        raise Refused("not_found", "no such account") from None
    except errors.LedgerError as refused:
        raise Refused(refused.code, refused.detail) from None
    return result.outcome == "appended"
