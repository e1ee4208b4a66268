"""The API keeps no models of its own: its idempotency records are app.core's ProcessedCommand."""
