"""The outbox is the log: the `integration_publisher` process manager follows it per bucket, as
any process manager does (its checkpoint in projections_checkpoint, so status, lag, pause,
resume, retry, skip, `/api/projections` and the console's Projections page cover it), and
publishes each event that has a translation (app/integration/events.py) to the topic exchange.
Nothing else is written: no outbox table, no dual write.

Order and delivery: the runner's lock gives one publisher per bucket, a stream's events are in
one bucket, and each message is published and confirmed before the next, so per-stream order
holds. The checkpoint moves after the batch, so a crash between a publish and that move
publishes again: at least once, with the domain event's id as the message id for consumers to
dedupe by. A broker that does not take a message raises `Deferred`: the run stops before that
event, unparked, and beat's tick tries the bucket again, so an outage only delays.
"""

from __future__ import annotations

import json
import logging

from app.integration import metrics
from app.integration.events import Message, registry
from app.integration.transport import BrokerUnavailable, Publishing
from eventstore.records import RecordedEvent
from eventstore.store import EventStore
from projections.processes import Deferred, ProcessManager, register

log = logging.getLogger(__name__)

_publishing = Publishing()  # one connection per worker process, made on first use


def headers(message: Message) -> dict[str, object]:
    return {"event_type": message.event.name, "schema_version": message.event.version}


def publish(message: Message) -> None:
    body = json.dumps(message.body, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        _publishing.publish(
            body, routing_key=message.event.routing_key, message_id=message.message_id, headers=headers(message)
        )
    except BrokerUnavailable as exc:
        metrics.PUBLISH_FAILURES.inc()
        raise Deferred(str(exc)) from exc
    metrics.PUBLISHED.labels(message.event.name, str(message.event.version)).inc()


@register
class IntegrationPublisher(ProcessManager):
    name = "integration_publisher"

    def handle(self, event: RecordedEvent) -> None:
        for message in registry.translate(event, EventStore()):
            publish(message)


IntegrationPublisher.handlers = registry.handlers  # every domain type with a translation, as they register
