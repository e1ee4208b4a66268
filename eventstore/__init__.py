"""A domain-agnostic event store on PostgreSQL.

Public API: `store.EventStore` (append, read_stream, read_all, head) and its stand-in
`memory.InMemoryEventStore` (same contract, no database), `records` (`NewEvent`,
`RecordedEvent`, `Checkpoint`, ...), the event `registry` with `event_type` and `upcaster`,
the Django-free `aggregate.Aggregate` base and the `repository.Repository` that loads and
saves aggregates on either store.
"""
