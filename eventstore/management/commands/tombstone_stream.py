from uuid import UUID

from django.core.management.base import BaseCommand, CommandError

from eventstore.store import EventStore


def stream_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise CommandError(f"not a stream id (a UUID): {text!r}") from None


class Command(BaseCommand):
    help = (
        "Tombstone STREAM_ID: the stream accepts no more events, ever (appends raise StreamTombstoned, "
        "the API answers 409 stream_tombstoned to commands and 410 stream_gone to reads of it); "
        "its events stay in the log for projections and rebuilds. Cannot be undone."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("stream_id", type=stream_id)
        parser.add_argument("--reason", default="", help="why, kept with the tombstone (no personal data)")

    def handle(self, *args, stream_id: UUID, reason: str, **options) -> None:
        store = EventStore()
        if "\x00" in reason:
            raise CommandError("the reason must not hold a NUL character")
        known = store.tombstone_of(stream_id)
        tombstone = known or store.tombstone(stream_id, reason=reason)
        events = store.stream_version(stream_id)
        said = "was already" if known else "is now"
        self.stdout.write(
            f"stream {stream_id} {said} tombstoned (at {tombstone.tombstoned_at.isoformat()}, {events} events)"
        )
