"""A domain-agnostic event store on PostgreSQL.

Public API: `store.EventStore` (append, read_stream, read_all, head), `records` (`NewEvent`,
`RecordedEvent`, `Checkpoint`, ...), the event `registry` with `event_type` and `upcaster`,
the Django-free `aggregate.Aggregate` base and the `repository.Repository` that loads and
saves aggregates.
"""
