"""The outbox is the log: the `integration_publisher` process manager follows it per bucket, as
any process manager does (its checkpoint in projections_checkpoint, so status, lag, pause,
resume, retry, skip, `/api/projections` and the console's Projections page cover it), and
publishes each event that has a translation (app/integration/events.py) to the topic exchange.
Nothing else is written: no outbox table, no dual write.

Order and delivery: the runner's lock gives one publisher per bucket, a stream's events are in
one bucket, and a batch's messages go to the broker in the log's order, all of them taken (and
confirmed, on RabbitMQ) before the checkpoint moves past them, so per-stream order holds. A crash
between the publish and that move publishes again: at least once, with the domain event's id as
the message id for consumers to dedupe by. A broker that does not take the batch raises
`Deferred`: the checkpoint stays where the batch began, unparked, and beat's tick tries the
bucket again, so an outage only delays.
"""

from __future__ import annotations

import json
import logging
import threading

from app.integration import metrics
from app.integration.events import Message, registry
from app.integration.transport import BrokerUnavailable, Outgoing, Publishing
from eventstore.records import RecordedEvent
from eventstore.store import EventStore
from projections.processes import Deferred, ProcessManager, register

log = logging.getLogger(__name__)

_publishing = Publishing()  # one connection per worker process, made on first use


def headers(message: Message) -> dict[str, object]:
    return {"event_type": message.event.name, "schema_version": message.event.version}


def outgoing(message: Message) -> Outgoing:
    body = json.dumps(message.body, separators=(",", ":"), ensure_ascii=False).encode()
    return Outgoing(body, message.event.routing_key, message.message_id, headers(message))


def publish_all(messages: list[Message]) -> None:
    """Every message, in order, taken by the broker; `Deferred` when it is away."""
    try:
        _publishing.publish_all([outgoing(m) for m in messages])
    except BrokerUnavailable as exc:
        metrics.PUBLISH_FAILURES.inc()
        raise Deferred(str(exc)) from exc
    for message in messages:
        metrics.PUBLISHED.labels(message.event.name, str(message.event.version)).inc()


@register
class IntegrationPublisher(ProcessManager):
    """Translates while the batch is read and publishes the batch's messages together at its end
    (one round trip to the broker rather than one per message)."""

    name = "integration_publisher"
    handled_per_batch = 1_000  # a publish costs no command: every translated event of the page in one batch
    in_batch = True  # it only reads and publishes: the projections' batch publishes for it (processes.in_batch)

    def __init__(self) -> None:
        self._local = threading.local()  # one instance serves every thread: each holds its own batch

    @property
    def _held(self) -> list[Message]:
        if not hasattr(self._local, "held"):
            self._local.held = []
        return self._local.held

    def handle(self, event: RecordedEvent) -> None:
        self._held.extend(registry.translate(event, EventStore()))

    def flush(self) -> None:
        if self._held:
            publish_all(self._held)

    def discard(self) -> None:
        self._local.held = []


IntegrationPublisher.handlers = registry.handlers  # every domain type with a translation, as they register
