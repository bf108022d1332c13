"""The three foundation scenarios, run the way a developer runs them: the CLI, headless, JSON out."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def sim_json(scenario: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "forecourtcli", "sim", "--headless", "--scenario", scenario,
                          "--json"], check=False, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout)


def test_list_scenarios_names_the_three() -> None:
    out = subprocess.run([sys.executable, "-m", "forecourtcli", "sim", "--list-scenarios"],
                         check=False, capture_output=True, text=True, timeout=60)
    names = out.stdout.split()
    assert {"fleet-happy", "fleet-declined-limit", "fleet-wrong-pin"} <= set(names)


def test_fleet_happy() -> None:
    doc = sim_json("fleet-happy")
    assert doc["result"] == "ok", doc["failures"]
    [sale] = doc["sales"]
    assert sale["status"] == "synced"
    assert sale["litres"] == "20.00" and sale["volume_cl"] == 2000
    assert sale["amount_cents"] == 3318 and sale["product"] == "diesel"
    assert sale["card_masked"] == "707700******0019"
    reg = doc["registry"]
    assert reg["sale_id"] == sale["id"] and reg["volume_cl"] == 2000 and reg["amount_cents"] == 3318
    assert reg["device_id"] == "T-0001" and reg["auth_id"]
    receipt = doc["receipt"]
    for text in ("Diesel", "20.00 L", "1.659 EUR/L", "33.18 EUR", "707700******0019", "ST-001", "T-0001",
                 sale["id"]):
        assert text in receipt, text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", receipt)
    assert "7077001000000019" not in json.dumps(doc)


def test_fleet_declined_limit() -> None:
    doc = sim_json("fleet-declined-limit")
    assert doc["result"] == "ok", doc["failures"]
    [sale] = doc["sales"]
    assert sale["status"] == "declined" and sale["reason"] == "limit_exhausted"
    assert doc["registry"] is None and doc["receipts"] == []
    assert any("Limit exhausted" in line for line in doc["transcript"])


def test_fleet_wrong_pin() -> None:
    doc = sim_json("fleet-wrong-pin")
    assert doc["result"] == "ok", doc["failures"]
    assert [s["reason"] for s in doc["sales"]] == ["wrong_pin", "wrong_pin", "pin_tries_exceeded",
                                                   "card_blocked"]
    assert doc["registry"] is None and doc["receipts"] == []


def test_sigterm_stops_everything_the_simulator_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import time

    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "forecourtcli", "sim", "--headless", "--scenario",
                             "pump-faults", "--state-dir", str(state)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (state / "terminal.log").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    leftovers = subprocess.run(["pgrep", "-af", str(state)], check=False, capture_output=True,
                               text=True).stdout
    assert [line for line in leftovers.splitlines() if "pgrep" not in line] == []
