"""The ten fleet-account scenarios of issue 14, run as a developer runs them: `forecourt sim --headless
--scenario NAME --json`, through real pcscd + vpcd, mosquitto, the DART pump line and the registry. Each
scenario's own checks must all hold (result ok); the JSON's sales and registry rows are checked here too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostsim.scenarios import SCENARIOS
from hostsim.scenarios_fleet import FLEET_SCENARIOS
from hostsim.scenarios_fleet2 import CARDS, STRIPE_PAN
from hostsim.world import load_cards
from tests.e2e.test_scenarios import sim_json

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# what each scenario's sales are: (status, reason, volume_cl, product) in the order the driver made them
SALES: dict[str, list[tuple[str, str | None, int, str | None]]] = {
    "fleet-daily-limit": [("synced", None, 1500, "diesel"), ("declined", "limit_exhausted", 0, None)],
    "fleet-product-not-allowed": [("synced", None, 1000, "diesel")],
    "fleet-two-wallets": [("synced", None, 1000, "diesel"), ("synced", None, 500, "adblue")],
    "fleet-odometer-backwards": [("declined", "odometer_invalid", 0, None), ("synced", None, 1000, "diesel")],
    "fleet-time-window": [("declined", "outside_time_window", 0, None), ("synced", None, 1000, "diesel")],
    "fleet-magstripe-card": [("synced", None, 1000, "diesel")],
    "fleet-contactless-tag": [("synced", None, 1000, "diesel"), ("declined", "unknown_card", 0, None)],
    "fleet-reissued-card": [("declined", "card_blocked", 0, None), ("synced", None, 1000, "diesel")],
    "fleet-lost-card-offline": [("synced", None, 1000, "diesel")],
    "fleet-two-pumps-one-wallet": [("synced", None, 2000, "diesel"),
                                   ("declined", "insufficient_funds", 0, None),
                                   ("synced", None, 1000, "diesel")],
}


def rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    reg = doc["registry"]
    return reg if isinstance(reg, list) else [reg] if reg else []


def test_every_fleet_scenario_is_listed() -> None:
    assert set(SALES) == set(FLEET_SCENARIOS) and set(FLEET_SCENARIOS) <= set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SALES))
def test_fleet_scenario(name: str) -> None:
    doc = sim_json(name)
    assert doc["result"] == "ok", doc["failures"]
    got = [(s["status"], s["reason"], s["volume_cl"], s["product"]) for s in doc["sales"]]
    assert got == SALES[name]
    synced = [s for s in doc["sales"] if s["status"] == "synced"]
    assert sorted(r["sale_id"] for r in rows(doc)) == sorted(s["id"] for s in synced)
    for sale in synced:
        [row] = [r for r in rows(doc) if r["sale_id"] == sale["id"]]
        assert (row["volume_cl"], row["amount_cents"]) == (sale["volume_cl"], sale["amount_cents"])
        assert row["account_id"] is not None and row["wallet_id"] is not None and not row["held"]
    EXTRA.get(name, lambda doc: None)(doc)
    text = json.dumps(doc)
    numbers = [c.fields.get("pan") or c.fields.get("uid") for c in load_cards()]
    for number in [*CARDS, STRIPE_PAN, *numbers]:
        assert number is None or number not in text, number[-4:]


def odometer_stored(doc: dict[str, Any]) -> None:
    [row] = rows(doc)
    assert row["odometer_km"] == 120350 and row["vehicle_id"] == 101


def offline_synced_once(doc: dict[str, Any]) -> None:
    [sale] = doc["sales"]
    [row] = rows(doc)
    assert "offline" in sale["flags"] and "offline" in row["flags"].split(",") and row["auth_id"] is None
    assert doc["timings"]["stop_list_reached_terminal_s"] < 30


def tag_masked(doc: dict[str, Any]) -> None:
    assert [s["card_masked"] for s in doc["sales"]] == ["U**********E5F6", "U**********5566"]


def two_wallets_pay(doc: dict[str, Any]) -> None:
    diesel, adblue = rows(doc)
    assert diesel["wallet_id"] != adblue["wallet_id"]       # litres for diesel, money for AdBlue


EXTRA = {"fleet-odometer-backwards": odometer_stored, "fleet-lost-card-offline": offline_synced_once,
         "fleet-contactless-tag": tag_masked, "fleet-two-wallets": two_wallets_pay}
