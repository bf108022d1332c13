"""Crash safety: the terminal is SIGKILLed while fuel flows; the sale settles exactly once on restart."""

from __future__ import annotations

import time

import pytest

from contracts.pump import PumpState
from hostsim.scenarios import Run
from hostsim.world import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def authorize_pump(run: Run, card: int = 0) -> int:
    run.ready()
    mark = run.insert(card)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    return mark


def test_sigkill_while_filling_settles_once(sim: Simulator, run: Run) -> None:
    authorize_pump(run)
    pump = sim.pump_line.pump(1)
    pump.flow_cl_per_s = 400.0
    pump.lift(1)
    pump.dispense(2345, wait=False)
    deadline = time.monotonic() + 20
    while pump.total(1)[0] < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    sim.kill_terminal()                       # mid-flow: nobody settles the sale now
    assert pump.state == PumpState.FILLING
    pump.dispense(0, timeout=30)              # the customer keeps filling to 23.45 L, then lets go
    pump.hang_up()
    run.remove()
    dispensed = pump.volume_cl
    assert dispensed == 2345

    mark = sim.panel.mark()
    sim.start_terminal()
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    rec = run.wait_synced(sale_id)
    assert rec.synced and rec.recovered
    assert rec.volume_cl == dispensed and rec.amount_cents == (dispensed * 1659 + 500) // 1000
    assert "totals_mismatch" not in rec.flags
    assert len(sim.printer.wait_receipts(1, 10)) == 1
    sales = sim.registry_sales()
    assert [(s["sale_id"], s["volume_cl"]) for s in sales] == [(sale_id, dispensed)]

    # a second restart finds nothing to settle and prints nothing more
    mark = sim.panel.mark()
    sim.kill_terminal()
    sim.start_terminal()
    run.wait("idle", mark, timeout=30)
    time.sleep(1.0)
    assert len(sim.printer.receipts) == 1
    assert len(sim.registry_sales()) == 1


def test_sigkill_before_nozzle_lift_settles_nothing_dispensed(sim: Simulator, run: Run) -> None:
    authorize_pump(run)
    sim.kill_terminal()
    run.remove()
    mark = sim.panel.mark()
    sim.start_terminal()
    # the restarted terminal follows the authorized pump: the customer can still fill
    pump = sim.pump_line.pump(1)
    time.sleep(1.0)
    assert pump.state == PumpState.AUTHORIZED
    pump.lift(1)
    pump.dispense(1000)
    pump.hang_up()
    run.wait("thank_you", mark, timeout=30)
    rec = run.wait_synced(run.last_sale_id())
    assert rec.synced and rec.recovered and rec.volume_cl == 1000
    assert [s["volume_cl"] for s in sim.registry_sales()] == [1000]


def test_registry_down_during_sale_queues_and_syncs_once(sim: Simulator, run: Run) -> None:
    authorize_pump(run)
    assert sim.registry is not None
    sim.registry.stop()
    sim.registry = None
    run.fill(1, 1, 1500)
    run.wait("thank_you", 0, timeout=30)
    sale_id = run.last_sale_id()
    time.sleep(1.0)
    journal = sim.journal()
    try:
        assert journal.get(sale_id).state == "completed" and not journal.get(sale_id).synced
    finally:
        journal.close()
    sim.start_registry()
    rec = run.wait_synced(sale_id, timeout=30)
    assert rec.synced
    assert [s["volume_cl"] for s in sim.registry_sales()] == [1500]
