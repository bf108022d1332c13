"""Scenario usb-bundle through the whole system (pcscd + vpcd, mosquitto, the pump line, the acquirer, the
registry and terminal processes) and the `forecourt usb` command line; then a tampered stick."""

from __future__ import annotations

import json
import subprocess

import pytest

from hostsim.scenarios import Run
from hostsim.scenarios_usb import authority_dir, usb_bundle
from hostsim.services import child_env, forecourt_command
from hostsim.world import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_usb_bundle_imported_twice_stored_once(sim: Simulator, run: Run) -> None:
    usb_bundle(run)
    assert run.checks == [], "\n".join(run.transcript)
    stick_sales = run.sale_ids[:2]          # then one sale over the link, once the broker is back
    stored = [s for s in sim.registry_sales() if s["sale_id"] in stick_sales]
    assert len(stored) == 2 and all(not s["held"] for s in stored)

    # the same stick, tampered with: refused in one line, with its reason, nothing stored
    stick = sim.state / "stick" / "sales.fcb"
    doc = json.loads(stick.read_bytes())
    doc["count"] += 1
    stick.write_text(json.dumps(doc))
    ca = authority_dir(sim)
    out = subprocess.run(forecourt_command("usb", "import-sales", "--db", sim.registry_url, "--state-dir",
                                           str(sim.state / "registry"), "--tls-dir", str(ca), str(stick)),
                         capture_output=True, text=True, env=child_env(), timeout=60, check=False)
    assert out.returncode == 1 and "reason=bad_signature" in out.stderr and "Traceback" not in out.stderr
    assert len([s for s in sim.registry_sales() if s["sale_id"] in stick_sales]) == 2
