"""The inbox's consumer: a kombu consumer of one durable queue, bound to the integration exchange
with the routing keys of the registered inbound handlers (app/integration/inbox.py).

One message at a time (a small prefetch), acknowledged only once `inbox.receive` has committed
its outcome (handled, duplicate or parked). A message whose fate could not be recorded (the
database is away) goes back to the queue, and the consumer pauses before the next. A lost broker
connection is re-established (ConsumerMixin), with a pause that grows; SIGTERM or SIGINT stop it
between messages (a message waiting to be tried again goes back to the queue).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from kombu import Connection, Consumer, Message, Queue, binding
from kombu.mixins import ConsumerMixin

from app.integration import inbox, transport

log = logging.getLogger(__name__)
BACK_OFF_S = 2.0  # after a message given back to the queue (busy, or its fate could not be recorded)


def queue(name: str | None = None) -> Queue:
    """The durable inbox queue, bound with every registered inbound type's routing key (and with
    nothing else: no binding with an empty key)."""
    exchange = transport.exchange()
    bindings = [binding(exchange, routing_key=key) for key in inbox.routing_keys()]
    return Queue(name or settings.EVENTFOLD_INBOX_QUEUE, bindings=bindings, durable=True)


def received(message: Message) -> inbox.Received:
    """A kombu message as the inbox sees it (its body untouched: the inbox parses it)."""
    properties: dict[str, Any] = message.properties or {}
    headers: dict[str, Any] = dict(message.headers or {})
    correlation = properties.get("correlation_id") or headers.get("correlation_id")
    message_id = properties.get("message_id") or None
    return inbox.Received(
        message_id=message_id if isinstance(message_id, str) else None,
        routing_key=str((message.delivery_info or {}).get("routing_key") or ""),
        headers=headers,
        body=message.body if isinstance(message.body, bytes) else str(message.body).encode(),
        correlation_id=correlation if isinstance(correlation, str) else None,
    )


class OneLine(logging.Filter):
    """kombu's "Connection to broker lost" comes with a traceback: here, one line naming the error
    (a broker going away is news, not a bug)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            record.msg, record.args = f"{record.getMessage()} ({record.exc_info[0].__name__})", ()
            record.exc_info, record.exc_text = None, None
        return True


class InboxConsumer(ConsumerMixin):
    def __init__(self, connection: Connection, queue_name: str | None = None) -> None:
        self.connection = connection
        self.queue = queue(queue_name)
        self.stop = threading.Event()

    def get_consumers(self, consumer: Any, channel: Any) -> list[Consumer]:
        return [consumer(queues=[self.queue], on_message=self.on_message, prefetch_count=settings.INBOX_PREFETCH)]

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        if self.should_stop:
            raise SystemExit(0)  # stopping while the broker is away: nothing is in hand
        log.warning("the broker is out of reach (%s); trying again in %.0f s", type(exc).__name__, interval)

    def on_connection_revived(self) -> None:
        log.info("consuming %s (%d message type(s))", self.queue.name, len(self.queue.bindings))

    def on_message(self, message: Message) -> None:
        try:
            inbox.receive(received(message), stop=self.stop)
        except inbox.Stopping:
            message.requeue()
            return
        except inbox.Busy as busy:
            log.info("busy (%s): the message goes back to the queue for now", busy)
            message.requeue()
            self.stop.wait(BACK_OFF_S)
            return
        except Exception as exc:  # its fate could not be recorded: the message goes back
            log.warning("an inbound message could not be settled (%s): back to the queue", type(exc).__name__)
            message.requeue()
            self.stop.wait(BACK_OFF_S)
            return
        message.ack()

    def request_stop(self, *_: Any) -> None:
        self.should_stop = True
        self.stop.set()
