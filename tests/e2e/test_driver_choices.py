"""The driver's own choices on the terminal, through the whole stack (simulator, CLI, JSON out): the
language on the idle screen, litres below the grant, hang up (hostsim/scenarios.py fleet-driver-choices)."""

from __future__ import annotations

import pytest

from tests.e2e.test_scenarios import sim_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_fleet_driver_picks_language_and_litres() -> None:
    doc = sim_json("fleet-driver-choices")
    assert doc["result"] == "ok", doc["failures"]
    [sale] = doc["sales"]
    assert sale["status"] == "synced" and sale["volume_cl"] == 1000
    assert any("driver keys 10 litres" in line for line in doc["transcript"])
    assert any("Bitte Zapfpistole einhängen" in line or "einhängen" in line for line in doc["transcript"])
