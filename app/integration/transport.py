"""The broker that carries integration messages, through kombu (which Celery already brings).

RabbitMQ whenever `AMQP_URL` is set, in any environment; otherwise the Redis that Eventfold
already uses (the embedded one under `make run`), so the feature works on a fresh machine. The
messages go to one topic exchange, named by `EVENTFOLD_EXCHANGE` (default `eventfold`), with
routing keys `<context>.<event>.v<N>` that consumers bind by pattern.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from amqp import spec
from amqp.exceptions import MessageNacked
from django.conf import settings
from kombu import Connection, Exchange, Producer
from kombu.entity import PERSISTENT_DELIVERY_MODE

log = logging.getLogger(__name__)
# A broker that holds a publish (RabbitMQ blocks publishers during a memory or disk alarm) fails
# it after this long, so the bucket's lock is not held for ever: the publish is tried again later.
PUBLISH_TIMEOUT_S = 10.0
# Messages sent to the broker in one go: one pipeline on Redis, one wait for the confirms on RabbitMQ.
BATCH_MAX = 500


def broker_url() -> str:
    return settings.INTEGRATION_BROKER_URL


def is_rabbitmq(url: str | None = None) -> bool:
    return (url or broker_url()).startswith(("amqp://", "amqps://", "pyamqp://"))


def exchange() -> Exchange:
    """The topic exchange integration events are published to (durable: it outlives a broker
    restart, as the queues bound to it do)."""
    return Exchange(settings.EVENTFOLD_EXCHANGE, type="topic", durable=True)


def connection(url: str | None = None) -> Connection:
    """A new kombu connection to the integration broker. Publisher confirms on RabbitMQ (a publish
    returns once the broker has the message); bounded connect and socket timeouts everywhere, so a
    broker that is away delays the caller and never hangs it."""
    url = url or broker_url()
    if is_rabbitmq(url):
        options: dict[str, object] = {"confirm_publish": True}
    else:
        options = {
            "socket_connect_timeout": settings.REDIS_TIMEOUT_S,
            "socket_timeout": settings.REDIS_TIMEOUT_S + 1,
        }
    return Connection(url, connect_timeout=settings.INTEGRATION_CONNECT_TIMEOUT_S, transport_options=options)


def declare(conn: Connection) -> None:
    """Declares the exchange on `conn` (idempotent)."""
    exchange()(conn.default_channel).declare()


def safe_url(url: str | None = None) -> str:
    """The broker's URL without its password, for logs."""
    return Connection(url or broker_url()).as_uri(include_password=False)


def declare_at_start() -> bool:
    """Declare the exchange once as a worker starts, on a connection of its own (closed before
    the pool forks). A broker that is down then is not fatal: the publisher declares again on
    its first publish. Returns whether it was declared."""
    try:
        with connection() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0)
            declare(conn)
    except Exception as exc:  # any broker failure: logged, and left to the first publish
        log.warning(
            "integration broker %s unreachable at start (%s): the publisher declares the exchange on its first publish",
            safe_url(),
            type(exc).__name__,
        )
        return False
    log.info("integration exchange %r declared on %s", settings.EVENTFOLD_EXCHANGE, safe_url())
    return True


class BrokerUnavailable(Exception):
    """The broker did not take the message (down, unreachable, refused or did not confirm it)."""


@dataclass(frozen=True)
class Outgoing:
    """One message for the exchange: the body as sent, and what travels beside it."""

    body: bytes
    routing_key: str
    message_id: str
    headers: dict[str, object]


class Publishing:
    """One connection and producer per process, made on first use and again after a failure
    (never one per message), used by one thread at a time. `publish_all` returns once the broker
    holds every message, in the order given: on RabbitMQ every message is published under
    publisher confirms and the confirms are awaited together; on Redis the LPUSHes go in
    pipelines of `BATCH_MAX` (kombu's publish batch) with the exchange's bindings read once per
    call. After a failure the next attempts fail at once for `cool_off_s`, so an outage costs
    each catch-up nothing while beat's tick keeps trying."""

    def __init__(self, cool_off_s: float = 2.0) -> None:
        self.cool_off_s = cool_off_s
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._pid = 0
        self._down_until = 0.0
        self._target = ("", "")  # the broker and exchange the connection was made for
        self._sent = 0  # messages published on the channel: the last one's delivery tag under confirms
        self._lock = threading.Lock()  # one connection per process: its threads publish one at a time

    def publish(self, body: bytes, *, routing_key: str, message_id: str, headers: dict[str, object]) -> None:
        self.publish_all([Outgoing(body, routing_key, message_id, headers)])

    def publish_all(self, messages: Sequence[Outgoing]) -> None:
        """Every message, in order, or `BrokerUnavailable`; some may have been taken before a
        failure (they are sent again with the rest: at least once)."""
        if not messages:
            return
        with self._lock:
            self._publish_all(messages)

    def _publish_all(self, messages: Sequence[Outgoing]) -> None:
        if time.monotonic() < self._down_until:
            raise BrokerUnavailable("the broker failed a moment ago; not tried again yet")
        try:
            self._send_all(messages)
        except Exception:  # a stale connection (a broker restarted): once more on a fresh one
            self.reset()
            try:
                self._send_all(messages)
            except Exception as exc:
                self.reset()
                self._went_down(exc)
                raise BrokerUnavailable(f"{safe_url()}: {type(exc).__name__}: {exc}") from exc
        if self._down_until:
            self._down_until = 0.0
            log.info("integration broker %s is back: publishing resumes", safe_url())

    def _went_down(self, exc: Exception) -> None:
        """Said once per outage (a warning), not once per attempt."""
        if not self._down_until:
            log.warning("integration broker %s unavailable (%s): publishing waits", safe_url(), type(exc).__name__)
        self._down_until = time.monotonic() + self.cool_off_s

    def _send_all(self, messages: Sequence[Outgoing]) -> None:
        producer = self._ready()
        if is_rabbitmq(self._target[0]):
            for start in range(0, len(messages), BATCH_MAX):
                with self._confirmed_together(producer.channel):
                    for message in messages[start : start + BATCH_MAX]:
                        self._send(producer, message)
        else:
            with _bindings_read_once(producer.channel), producer.batch(max_size=BATCH_MAX):
                for message in messages:
                    self._send(producer, message)

    def _send(self, producer: Producer, message: Outgoing) -> None:
        producer.publish(
            message.body,
            exchange=exchange(),
            routing_key=message.routing_key,
            headers=message.headers,
            message_id=message.message_id,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=PERSISTENT_DELIVERY_MODE,
            retry=False,
            timeout=PUBLISH_TIMEOUT_S,
            confirm_timeout=PUBLISH_TIMEOUT_S,
        )
        self._sent += 1

    @contextmanager
    def _confirmed_together(self, channel: object) -> Iterator[None]:
        """Publishes inside go out without waiting each for its confirm (the channel is in confirm
        mode; py-amqp would otherwise wait after every message); on leaving, wait until the broker
        has confirmed every one of them, and raise if it refused (nacked) any or took too long."""
        first = self._sent + 1
        up_to, singly, nacked = [0], set(), []  # confirmed: every tag <= up_to[0], and those in singly

        def settled(tag: int, multiple: bool) -> None:
            if multiple:
                up_to[0] = max(up_to[0], tag)
            else:
                singly.add(tag)

        def refused(tag: int, multiple: bool) -> None:
            nacked.append(tag)

        def unconfirmed() -> int:
            return sum(1 for t in range(max(first, up_to[0] + 1), self._sent + 1) if t not in singly)

        if not channel._confirm_selected:  # type: ignore[attr-defined]  # py-amqp selects on its first confirmed publish
            channel._confirm_selected = True  # type: ignore[attr-defined]
            channel.confirm_select()  # type: ignore[attr-defined]
        channel.events["basic_ack"].add(settled)  # type: ignore[attr-defined]
        channel.events["basic_nack"].add(refused)  # type: ignore[attr-defined]
        channel.basic_publish = channel._basic_publish  # type: ignore[attr-defined]  # no wait per message
        try:
            yield
            deadline = time.monotonic() + PUBLISH_TIMEOUT_S
            while not nacked and (left := unconfirmed()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{left} messages not confirmed within {PUBLISH_TIMEOUT_S:.0f} s")
                channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=remaining)  # type: ignore[attr-defined]
            if nacked:
                raise MessageNacked(f"the broker refused {len(nacked)} messages")
        finally:
            channel.basic_publish = channel.basic_publish_confirm  # type: ignore[attr-defined]
            channel.events["basic_ack"].discard(settled)  # type: ignore[attr-defined]
            channel.events["basic_nack"].discard(refused)  # type: ignore[attr-defined]

    def _ready(self) -> Producer:
        if self._pid != os.getpid():  # a forked pool process: the parent's socket is not ours
            self._conn = self._producer = None
            self._pid = os.getpid()
        target = (broker_url(), settings.EVENTFOLD_EXCHANGE)
        if self._producer is not None and self._target != target:  # the settings changed (tests do)
            self.reset()
        if self._producer is None:
            conn = connection()
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, interval_max=0)
            declare(conn)
            self._conn, self._producer, self._target = conn, Producer(conn.default_channel), target
            self._sent = 0
        return self._producer

    def reset(self) -> None:
        """Drop the connection (closing it quietly: it may be dead already)."""
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None and self._pid == os.getpid():
            try:
                conn.release()
            except Exception:  # already broken: nothing to close
                log.debug("closing a broken broker connection failed", exc_info=True)


@contextmanager
def _bindings_read_once(channel: object) -> Iterator[None]:
    """kombu's Redis transport reads the exchange's bindings (a SMEMBERS) for every message it
    routes; inside, they are read once per exchange. A queue bound meanwhile gets the messages of
    the next call, as it would have if it had been bound a moment later."""
    channel.get_table = functools.cache(channel.get_table)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del channel.get_table  # type: ignore[attr-defined]  # back to the transport's own
