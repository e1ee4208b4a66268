"""A worker survives a broker that goes away (Redis restarted, say) while it holds tasks.

Celery 5.7.0's consumer, on losing its broker connection, first collects the connection (which
detaches the kombu transport from its client) and then closes it; closing the channel restores
the messages delivered but not yet acknowledged, and kombu's Redis transport then builds a new
connection pool from the detached client: `AttributeError: 'NoneType' object has no attribute
'hostname'`, which Celery takes for an unrecoverable error, and the worker exits. It happens
when a task is running (unacknowledged, as `acks_late` tasks are) at the moment the broker goes;
the fault soak met it once (tests/integration/test_fault_soak.py, docs/reliability.md).

`install()` makes that restore skip a connection already collected: the messages are still in
Redis, in the transport's unacknowledged set, and come back after its visibility timeout; a
catch-up wake-up lost meanwhile is re-sent by beat's tick within seconds, a rebuild's slice by
`rebuild.resume_stalled`. Everything else about the restore is kombu's own.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

_original = kombu_redis.QoS.restore_unacked


def _restore_unacked(self: Any, client: Any = None) -> Any:
    transport = getattr(self.channel, "connection", None)
    if transport is None or getattr(transport, "client", None) is None:
        return None  # collected: the broker keeps these messages and gives them back later
    return _original(self, client)


def install() -> None:
    """Idempotent; called where the Celery app is made (app/celery.py)."""
    kombu_redis.QoS.restore_unacked = _restore_unacked  # type: ignore[method-assign]
