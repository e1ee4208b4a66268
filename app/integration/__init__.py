"""Eventfold's traffic with other services: integration events published from the log (the
outbox), messages consumed exactly once in effect (the inbox and its dead letters), and live
subscriptions for outside readers. Generic: a domain (app/ledger) registers its own translations
and inbound handlers here; nothing here knows the ledger."""
