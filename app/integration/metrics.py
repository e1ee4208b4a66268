"""The inbox's metrics: messages by type and outcome (counted in the consuming process, summed by
the scrape like every counter, see app/core/metrics.py) and the dead letters by status (read from
the database at scrape time, so right from any process).
The publisher's counters: counted in each worker process, summed at scrape time; its lag is the
process manager's (`eventfold_projection_lag_events{projection="integration_publisher"}`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from projections import metrics as _projection_metrics  # noqa: F401  (first: it makes sure of the multiprocess mode)

OUTCOMES = ("handled", "duplicate", "dead_lettered", "retried")
MESSAGES = Counter(
    "eventfold_inbox_messages_total",
    "Inbound messages by type (a registered one, else unknown) and outcome: handled, duplicate "
    "(delivered again: nothing appended), dead_lettered, retried (a transient failure, tried again)",
    ["type", "outcome"],
)


class DeadLetterCollector:
    """eventfold_inbox_dead_letters{status}: the dead letters kept, by status (parked ones wait
    for an operator)."""

    def collect(self) -> Iterator[Metric]:
        from app.integration.dead_letters import by_status

        family = GaugeMetricFamily(
            "eventfold_inbox_dead_letters",
            "Dead letters kept, by status (parked: waiting for an operator)",
            labels=["status"],
        )
        try:
            counts = by_status()
        except Exception:  # the database is away: the scrape still answers, without this family's values
            return
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family


PUBLISHED = Counter(
    "eventfold_integration_published_total",
    "Integration events the broker took (confirmed on RabbitMQ), by integration event type and version",
    ["type", "version"],
)
PUBLISH_FAILURES = Counter(
    "eventfold_integration_publish_failures_total",
    "Publishes the broker did not take (the event is published again later, not parked)",
)
