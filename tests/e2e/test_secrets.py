"""No PIN and no full card number in any log line, journal row, database, receipt or error text."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostsim.scenarios import Run
from hostsim.world import Simulator, load_cards

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A PIN no timestamp, UUID or counter will contain by chance.
WRONG_PIN = "731902468135"


def test_no_pin_or_pan_anywhere(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin(WRONG_PIN)
    run.wait("declined", mark)
    run.remove()
    run.wait("idle", mark)
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.fill(1, 1, 500)
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    run.remove()
    assert run.wait_synced(sale_id).synced
    sim.printer.wait_receipts(1, 10)

    pans = [c.fields["pan"] for c in load_cards() if c.kind == "fleet"]
    files = [p for p in Path(sim.state).rglob("*") if p.is_file() and p.suffix not in (".toml", ".hex")]
    names = {p.name for p in files}
    assert {"terminal.log", "registry.log", "journal.db", "registry.db"} <= names
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["receipts"] = "\n".join(sim.printer.receipts).encode()
    blobs["screens"] = repr(sim.panel.screens).encode()
    blobs["transcript"] = "\n".join(run.transcript).encode()
    for where, data in blobs.items():
        for pan in pans:
            assert pan.encode() not in data, f"full card number in {where}"
            assert pan.encode().hex().encode() not in data.lower(), f"hex card number in {where}"
        assert WRONG_PIN.encode() not in data, f"PIN in {where}"
    pin_key = sim.device["pin_key"].lower().encode()
    for where in ("terminal.log", "registry.log", "mosquitto.log"):
        text = (sim.state / where).read_bytes().lower()
        assert pin_key not in text, f"PIN key in {where}"
