"""The dashboard's activity chart: slots of 10 s stacked by type, scaled to the tallest, the busiest
types coloured and the rest folded into "other" (the counts are stubbed: no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.console.views import dashboard

NOW = datetime(2026, 5, 1, 12, 0, 5, tzinfo=UTC)  # 5 s into the slot that starts at 12:00:00


@pytest.fixture
def counts(monkeypatch):
    rows: list[tuple[datetime, str, int]] = []
    monkeypatch.setattr(dashboard, "activity", lambda now: rows)
    return rows


def test_bars_stack_per_slot_and_scale_to_the_tallest(counts):
    counts += [
        (NOW.replace(second=0) - timedelta(seconds=10), "ledger.FundsDeposited", 30),
        (NOW.replace(second=0) - timedelta(seconds=10), "ledger.FundsWithdrawn", 10),
        (NOW.replace(second=0), "ledger.FundsDeposited", 20),
    ]
    chart = dashboard.chart(NOW)
    assert chart["total"] == 60
    assert chart["rate_now"] == "4"  # the last full slot: 40 events in 10 s
    assert chart["tallest_per_s"] == "4"
    last_full = [r for r in chart["rects"] if "11:59:50" in r["title"]]
    assert len(last_full) == 2  # one bar, two types stacked
    assert sum(r["h"] for r in last_full) == pytest.approx(dashboard.HEIGHT - dashboard.BOTTOM - 8, abs=0.2)
    assert [name for name, _, _ in chart["legend"]] == ["ledger.FundsDeposited", "ledger.FundsWithdrawn"]
    current = [r for r in chart["rects"] if "12:00:00" in r["title"]]
    assert current[0]["x"] > last_full[0]["x"]  # the current slot is the rightmost bar


def test_types_beyond_the_palette_are_other(counts):
    counts += [(NOW.replace(second=0), f"t.Type{i}", 100 - i) for i in range(len(dashboard.PALETTE) + 3)]
    chart = dashboard.chart(NOW)
    names = [name for name, _, _ in chart["legend"]]
    assert names[-1] == "other" and len(names) == len(dashboard.PALETTE) + 1
    assert chart["legend"][-1][2] == sum(100 - i for i in range(len(dashboard.PALETTE), len(dashboard.PALETTE) + 3))


def test_an_idle_log_draws_no_bars(counts):
    chart = dashboard.chart(NOW)
    assert chart["rects"] == [] and chart["legend"] == [] and chart["total"] == 0


# -- the command chart beside it -------------------------------------------------------------------
def _stub_slots(monkeypatch, found):
    asked = []

    def slots(first: int, last: int):
        asked.append((first, last))
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(dashboard.command_rate, "slots", slots)
    return asked


def test_commands_stack_by_kind_with_the_rates_of_the_last_full_slot(monkeypatch):
    last_full = int(NOW.replace(second=0).timestamp()) - 10
    asked = _stub_slots(
        monkeypatch,
        {
            last_full - 10: {"ok": 10, "refused": 0, "error": 0},
            last_full: {"ok": 20, "refused": 5, "error": 5},
        },
    )
    chart = dashboard.command_chart(NOW)
    assert asked == [(int((NOW - dashboard.SPAN).timestamp()) // 10 * 10, int(NOW.timestamp()))]
    assert chart["available"] is True
    assert (chart["rate_now"], chart["errors_now"], chart["refused_now"]) == ("3", "0.5", "0.5")
    assert chart["total"] == 40
    assert (chart["error_ratio"], chart["refused_ratio"]) == ("12.5", "12.5")
    assert chart["tallest_per_s"] == "3"
    assert [r["fill"] for r in chart["rects"]] == ["#2456c9", "#2456c9", "#b26b00", "#b42318"]
    tallest = [r for r in chart["rects"] if r["title"].endswith("20 ok (2/s)")]
    assert tallest and tallest[0]["x"] > chart["rects"][0]["x"]
    assert chart["legend"] == [("ok", "#2456c9", 30), ("refused", "#b26b00", 5), ("error", "#b42318", 5)]


def test_no_commands_draw_no_bars_and_a_zero_rate(monkeypatch):
    _stub_slots(monkeypatch, {})
    chart = dashboard.command_chart(NOW)
    assert (chart["rects"], chart["total"], chart["rate_now"], chart["error_ratio"]) == ([], 0, "0", "0")


def test_commands_unavailable_while_redis_is_down(monkeypatch):
    _stub_slots(monkeypatch, ConnectionError("no redis"))
    assert dashboard.command_chart(NOW) == {"available": False}
