"""A micro-benchmark of the read path's upcast pass (`EventRegistry.upcast_events`) on pages of
1,000 events, without a database: what every read pays per event once some type has history.

    python -m bench.upcast_read
"""

from __future__ import annotations

import os
import timeit
import uuid
from datetime import UTC, datetime

import django

PAGE = 1000


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    django.setup()
    from eventstore.records import RecordedEvent
    from eventstore.registry import registry

    now, stream = datetime.now(UTC), uuid.uuid4()

    def page(event_type: str, schema_version: int) -> list[RecordedEvent]:
        return [
            RecordedEvent(i, 1, stream, "bench", i, uuid.uuid4(), event_type, schema_version, {"amount": i}, {}, now)
            for i in range(PAGE)
        ]

    current = registry.current_versions["ledger.FundsDeposited"]
    pages = {
        "types without history": page("bench.Something", 1),
        f"deposits at the current version {current}": page("ledger.FundsDeposited", current),
        "deposits stored at version 1 (upcast)": page("ledger.FundsDeposited", 1),
    }
    for name, events in pages.items():

        def read(events: list[RecordedEvent] = events) -> None:
            registry.upcast_events(list(events))  # a fresh list, as each read's fetch makes

        seconds = min(timeit.repeat(read, number=200, repeat=5))
        print(f"{name}: {seconds / 200 / PAGE * 1e9:.0f} ns per event")


if __name__ == "__main__":
    main()
