"""The ledger domain: pure Python (pydantic, and the Django-free `eventstore.aggregate` base), no Django."""
