"""The console's event page shows the trace an event was appended in, linked to a tracing UI
when EVENTFOLD_TRACE_URL says where one is."""

from __future__ import annotations

import html
from uuid import uuid4

import pytest
from django.urls import reverse

from eventstore.records import NewEvent
from tests.integration.console.test_streams_views import client_for
from tests.support import Opened


@pytest.fixture
def viewer(transactional_db):
    return client_for("viewer")


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _page(client, store, metadata: dict) -> str:
    event_id = uuid4()
    store.append(uuid4(), "tally", [NewEvent(Opened(name="a"), metadata, event_id)])
    response = client.get(reverse("console:event", args=[event_id]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_trace_id_is_linked_through_the_configured_template(viewer, store, settings):
    settings.EVENTFOLD_TRACE_URL = "http://jaeger.example:16686/trace/{trace_id}?uiFind=x&y=1"
    page = _page(viewer, store, {"traceparent": TRACEPARENT})
    link = f'href="{html.escape(f"http://jaeger.example:16686/trace/{TRACE_ID}?uiFind=x&y=1")}"'
    assert link in page and f">{TRACE_ID}</a>" in page


def test_without_a_template_the_trace_id_is_shown_unlinked(viewer, store, settings):
    settings.EVENTFOLD_TRACE_URL = ""
    page = _page(viewer, store, {"traceparent": TRACEPARENT})
    assert f'<span class="mono">{TRACE_ID}</span>' in page and "/trace/" not in page


def test_an_event_without_a_valid_trace_context_has_no_trace_id(viewer, store, settings):
    settings.EVENTFOLD_TRACE_URL = "http://localhost:16686/trace/{trace_id}"
    for metadata in (
        {},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": 7},
    ):
        page = _page(viewer, store, metadata)
        assert "appended without tracing" in page and "16686" not in page, metadata
