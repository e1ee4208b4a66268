"""A domain-agnostic event store on PostgreSQL.

Public API: `EventStore` (append, read_stream, read_all, head), `NewEvent`,
`RecordedEvent`, `Checkpoint`, the event `registry` with `event_type` and
`upcaster`, and the aggregate `Repository`.
"""
