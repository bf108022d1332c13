"""Scenario update-rollback on the whole simulated forecourt: a good update is installed between sales and
kept; a bad one fails its health check after the restart, the terminal returns to the previous version,
reports rolled_back, and the rollout halts by itself (hostsim/scenarios_update.py)."""

from __future__ import annotations

import time

import pytest

from firmware.update_slots import FACTORY
from firmware.updater import RESTART_EXIT, running_version
from hostsim.scenarios import SCENARIOS, Run
from hostsim.scenarios_update import GOOD, Supervised, release, update_rollback

pytestmark = pytest.mark.system


def test_update_rollback(run: Run) -> None:
    assert SCENARIOS["update-rollback"] is update_rollback
    try:
        update_rollback(run)
    finally:
        print("\n".join(run.transcript))
    assert run.checks == []


def test_an_update_waits_for_the_sale_in_progress(run: Run) -> None:
    """Staged while a pump is authorized for a fleet sale, the update is installed only once the sale is
    completed: the terminal keeps running its version (same process) through the whole fill."""
    sim = run.sim
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.remove()                              # the loop is back at its top while the pump waits
    pid = sim.terminal.pid                    # type: ignore[union-attr]
    release(run, GOOD, "raise SystemExit(0)\n")
    staged = sim.terminal_config.parent / "software" / GOOD / "release.json"
    deadline = time.monotonic() + 30
    while not staged.exists():
        assert time.monotonic() < deadline, "the update was never staged"
        time.sleep(0.1)
    time.sleep(2.0)                           # several turns of the terminal's loop with the sale open
    assert sim.terminal is not None and sim.terminal.poll() is None and sim.terminal.pid == pid
    assert running_version(sim.terminal_config.parent) == FACTORY
    run.fill(1, 1, 1000)
    assert sim.terminal.poll() is None or sim.terminal.poll() == RESTART_EXIT
    sale_id = run.last_sale_id()
    supervisor = Supervised(run)
    assert supervisor.until_reported(GOOD, "installed") == "completed"
    rec = run.wait_synced(sale_id)
    assert rec.state == "completed" and rec.volume_cl == 1000 and not rec.recovered
    assert supervisor.restarts == 1 and running_version(sim.terminal_config.parent) == GOOD
