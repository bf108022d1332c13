"""Pump-line scenarios end to end: four pumps at once with DART faults, and a pump lost mid-sale."""

from __future__ import annotations

import pytest

from tests.e2e.test_scenarios import sim_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_pump_faults_every_sale_settles_once_with_pump_figures() -> None:
    doc = sim_json("pump-faults")
    assert doc["result"] == "ok", doc["failures"]
    sales = {s["pump"]: s for s in doc["sales"]}
    assert sorted(sales) == [1, 2, 3, 4]
    assert sales[1]["volume_cl"] == 1500 and sales[1]["amount_cents"] == (1500 * 1659 + 500) // 1000
    assert sales[3]["volume_cl"] == 700                       # hung up early
    assert sales[4]["volume_cl"] == 900 and sales[4]["product"] == "petrol95"   # flow stopped early
    assert "settled_from_totals" in sales[2]["flags"]         # pump restarted mid-filling
    assert all(s["status"] == "synced" and s["receipt_printed"] for s in sales.values())
    registry = doc["registry"]
    assert sorted((r["pump"], r["volume_cl"]) for r in registry) == sorted(
        (s["pump"], s["volume_cl"]) for s in sales.values())
    assert len(doc["receipts"]) == 4


def test_pump_offline_midsale_settles_and_flags_for_attendant() -> None:
    doc = sim_json("pump-offline-midsale")
    assert doc["result"] == "ok", doc["failures"]
    [sale] = doc["sales"]
    assert sale["status"] == "synced" and "attendant_check" in sale["flags"]
    assert sale["volume_cl"] == 2000 and doc["registry"]["volume_cl"] == 2000
    assert any("Pump unavailable" in line for line in doc["transcript"])
