"""The console's Projections page lists the named subscriptions with their lag and consumers."""

from __future__ import annotations

from django.urls import reverse

from app.integration import subscriptions
from tests.integration.console.clients import console_client


def test_the_projections_page_lists_subscriptions_with_lag_and_consumers(transactional_db):
    page = reverse("console:projections")
    viewer = console_client("vic", "viewer")
    assert 'id="subscriptions"' not in viewer.get(page).content.decode()  # none yet: no section
    subscriptions.subscription_create(name="billing", category="account", types=["ledger.FundsDeposited"])
    subscriptions.fetch("billing", "billing-1", limit=10)
    html = viewer.get(page).content.decode()
    assert 'data-subscription="billing"' in html
    assert "ledger.FundsDeposited" in html and "billing-1 (64 buckets)" in html
