"""The inbox: messages from other services handled exactly once in effect, or parked.

A domain registers a handler per message type (`register`): a pydantic model for the body and a
function that runs the command. `receive` handles one message:

1. parse: the message id (required), the type (the `type` header, else the routing key), a known
   handler, a JSON body the model accepts; anything else is refused at once (a dead letter);
2. skip a message whose id is in the inbox table (a redelivery: "duplicate");
3. in one transaction: the handler's command (its append is the transaction's first write), then
   the message id into the inbox table; the command's id, and so its events' ids, derive from the
   message id, so even a redelivery after the inbox record was swept appends nothing twice;
4. a refusal by the domain parks the message at once; any other error is tried again, up to
   INBOX_MAX_ATTEMPTS times with a doubling pause, then parked ("failed_repeatedly").

The consumer (`manage.py consume_inbox`) acknowledges a message only after `receive` returns, that
is after the commit (or the dead letter's commit). Nothing here knows a domain: app/ledger
registers its handlers in LedgerConfig.ready.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID, uuid5

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from app.core import connections
from app.integration import dead_letters
from app.integration.messages import Busy, Delivery, Received, Refused
from app.integration.metrics import MESSAGES
from app.integration.models import DeadLetter, InboxMessage
from eventstore.inputs import text_problem

log = logging.getLogger(__name__)
NAMESPACE = UUID("6a4f3c1e-9b7d-4e0a-8f2c-5d1b7e3a9c40")  # command ids of inbound messages
MESSAGE_ID_MAX = 255
Outcome = Literal["handled", "duplicate", "dead_lettered"]
B = TypeVar("B", bound=BaseModel)


class Stopping(Exception):
    """The consumer was asked to stop while a message waited to be tried again: it goes back
    to the queue unacknowledged."""


# -- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Handler(Generic[B]):
    """`handle(body, delivery)` runs the command and returns whether it appended (False: the
    same command's events were already in the log). It raises Refused for a business refusal."""

    name: str
    schema: type[B]
    handle: Callable[[B, Delivery], bool]


HANDLERS: dict[str, Handler[Any]] = {}


def register(name: str, schema: type[B]) -> Callable[[Callable[[B, Delivery], bool]], Callable[[B, Delivery], bool]]:
    """Register the handler of inbound messages of type `name` (also the routing key the inbox queue
    is bound with, e.g. `payments.payment_received.v1`)."""

    def decorate(handle: Callable[[B, Delivery], bool]) -> Callable[[B, Delivery], bool]:
        if name in HANDLERS and HANDLERS[name].handle is not handle:
            raise ValueError(f"inbound message type {name!r} has a handler already")
        HANDLERS[name] = Handler(name, schema, handle)
        return handle

    return decorate


def count(message_type: str, outcome: str) -> None:
    """One message's outcome, by its type (a registered one, else "unknown": labels stay few)."""
    MESSAGES.labels(message_type if message_type in HANDLERS else "unknown", outcome).inc()


def routing_keys() -> list[str]:
    return sorted(HANDLERS)


def command_id(message_id: str) -> UUID:
    """The id of the command an inbound message becomes (its events' ids derive from it)."""
    return uuid5(NAMESPACE, message_id)


# -- parsing -------------------------------------------------------------------------------------
def parse(message: Received) -> tuple[Handler[Any], BaseModel, Delivery]:
    """The message's handler, its body as the handler's model and its delivery; Refused if any
    of them is wrong."""
    message_id = valid_message_id(message.message_id)
    if message.truncated or len(message.body) > settings.INBOX_MAX_BODY_BYTES:
        raise Refused("too_large", f"the body is over {settings.INBOX_MAX_BODY_BYTES} bytes")
    handler = HANDLERS.get(message.type)
    if handler is None:
        raise Refused("unknown_type", f"no handler for messages of type {message.type[:100]!r}")
    try:
        data = json.loads(message.body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("invalid_json", "the body is not JSON") from None
    try:
        body = handler.schema.model_validate(data)
    except ValidationError as exc:
        raise Refused("validation_error", _fields(exc)) from None
    return handler, body, Delivery(message_id, command_id(message_id), _uuid(message.correlation_id))


def valid_message_id(given: str | None) -> str:
    if not isinstance(given, str) or not given.strip():
        raise Refused("missing_message_id", "a message needs a message_id: without one it cannot be deduplicated")
    if len(given) > MESSAGE_ID_MAX or text_problem(given):
        raise Refused("invalid_message_id", f"the message_id must be 1 to {MESSAGE_ID_MAX} storable characters")
    return given


def _fields(exc: ValidationError) -> str:
    """Which fields are wrong and how, never what they hold (pydantic's `input` is left out)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in exc.errors())[:1000]


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except (ValueError, TypeError, AttributeError):
        return None


# -- handling ------------------------------------------------------------------------------------
def handle_once(message: Received) -> Literal["handled", "duplicate"]:
    """One try: the command and the inbox record in one transaction. Refused, or any other error
    (transient: the transaction rolled back, nothing is written)."""
    handler, body, delivery = parse(message)
    if InboxMessage.objects.filter(pk=delivery.message_id).exists():
        return "duplicate"
    try:
        with transaction.atomic():
            appended = handler.handle(body, delivery)  # the append: the transaction's first write
            InboxMessage.objects.create(message_id=delivery.message_id, type=handler.name, handled_at=timezone.now())
    except IntegrityError:  # recorded meanwhile by another consumer: that one handled it
        return "duplicate"
    return "handled" if appended else "duplicate"


def receive(message: Received, *, stop: Event | None = None) -> Outcome:
    """Handle `message` (see the module's docstring) and say how it ended. Raises only when its
    fate could not be recorded (the database is away: the consumer gives the message back to the
    queue), Busy (the same) or Stopping."""
    stop = stop or Event()
    with structlog.contextvars.bound_contextvars(message_id=message.message_id, message_type=message.type[:100]):
        for attempt in range(1, settings.INBOX_MAX_ATTEMPTS + 1):
            connections.start_clean()
            try:
                outcome = handle_once(message)
            except Refused as refused:
                return _parked(message, refused.reason, refused.detail, attempt)
            except Busy:
                raise
            except Exception as exc:
                if attempt == settings.INBOX_MAX_ATTEMPTS:
                    return _parked(message, "failed_repeatedly", _redacted(exc), attempt)
                count(message.type, "retried")
                pause = settings.INBOX_RETRY_BACKOFF_S * 2 ** (attempt - 1)
                log.warning("inbound message failed (%s); trying again in %.1f s", _redacted(exc), pause)
                if stop.wait(pause):
                    raise Stopping() from exc
                continue
            count(message.type, outcome)
            log.info("inbound message %s", outcome)
            return outcome
    raise AssertionError("unreachable")


def _parked(message: Received, reason: str, detail: str, attempts: int) -> Outcome:
    connections.start_clean()
    dead_letters.park(message, reason=reason, detail=detail, attempts=attempts)
    count(message.type, "dead_lettered")
    log.warning("inbound message parked as a dead letter: %s", reason)
    return "dead_lettered"


def _redacted(exc: BaseException) -> str:
    """An error as its type only: its message may quote what the message carried."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"


# -- replaying a dead letter ------------------------------------------------------------------------
def received(letter: DeadLetter) -> Received:
    """A dead letter as the message it was."""
    return Received(
        message_id=letter.message_id,
        routing_key=letter.routing_key,
        headers=dict(letter.headers),
        body=bytes(letter.body),
        correlation_id=letter.correlation_id or None,
        truncated=letter.body_truncated,
    )


def replay(letter_id: int, *, user: Any) -> Literal["handled", "duplicate", "failed", "busy"]:
    """Run a parked message through its handler again (once the cause is fixed) and mark it
    replayed by `user`, in the transaction of its command, after the append. A message whose id
    is in the inbox already (handled meanwhile) is marked replayed too and appends nothing. If it
    fails again it stays parked with the new reason ("failed"); "busy" leaves it as it was (try
    again shortly). NotParked if it is not parked."""
    letter = DeadLetter.objects.get(pk=letter_id)
    if letter.status != DeadLetter.Status.PARKED:
        raise dead_letters.NotParked(letter.status)
    message = received(letter)
    with structlog.contextvars.bound_contextvars(message_id=message.message_id, message_type=message.type[:100]):
        try:
            outcome = _replay_once(letter.pk, message, user)
        except dead_letters.NotParked:
            raise
        except Busy:
            return "busy"
        except Refused as refused:
            dead_letters.failed_again(letter.pk, reason=refused.reason, detail=refused.detail)
            log.warning("dead letter replayed, refused again: %s", refused.reason)
            return "failed"
        except Exception as exc:
            connections.close_dirty()
            dead_letters.failed_again(letter.pk, reason="failed_repeatedly", detail=_redacted(exc))
            log.warning("dead letter replayed, failed again: %s", _redacted(exc))
            return "failed"
    count(message.type, outcome)
    log.info("dead letter replayed: %s", outcome)
    return outcome


def _replay_once(letter_id: int, message: Received, user: Any) -> Literal["handled", "duplicate"]:
    handler, body, delivery = parse(message)
    with transaction.atomic():
        if InboxMessage.objects.filter(pk=delivery.message_id).exists():
            dead_letters.settle(letter_id, DeadLetter.Status.REPLAYED, user)
            return "duplicate"
        appended = handler.handle(body, delivery)  # the append: the transaction's first write
        InboxMessage.objects.create(message_id=delivery.message_id, type=handler.name, handled_at=timezone.now())
        dead_letters.settle(letter_id, DeadLetter.Status.REPLAYED, user)
    return "handled" if appended else "duplicate"
