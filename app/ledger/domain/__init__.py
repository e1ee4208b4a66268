"""The ledger domain: pure Python (pydantic only), no Django, no event store."""
