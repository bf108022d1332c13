"""Pump-line scenarios: four pumps at once with every DART fault injected, and a pump lost mid-sale.

What must hold: each sale settles with the pump's own figures (volume and amount from the pump, checked
against its totalizers), none is lost or counted twice, in the journal and in the registry.
"""

from __future__ import annotations

import time
from typing import Any

from contracts.pump import PumpState
from drivers.pump.simulator import SimPump

__all__ = ["authorize_at", "pump_faults", "pump_offline_midsale"]


def authorize_at(run: Any, pump: int, card: int = 0) -> None:
    """A driver walks up, inserts a card, picks the pump, keys the PIN and takes the card back."""
    mark = run.insert(card)
    if len(run.sim.terminal_pumps) > 1:
        run.wait("select_pump", mark)
        run.sim.panel.press(str(pump))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.remove()
    run.wait("idle", mark)


def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def _pump_total(p: SimPump) -> int:
    return sum(p.total(n)[0] for n in p.prices)


def _check_settled(run: Any, expected: dict[str, int]) -> None:
    """Every sale in the journal and the registry once, with the pump's own volume."""
    for sale_id in run.sale_ids:
        run.wait_synced(sale_id, timeout=40)
    journal = run.sim.journal()
    try:
        recs = {r.id: r for r in journal.all_sales()}
    finally:
        journal.close()
    reg = {r["sale_id"]: r for r in run.sim.registry_sales()}
    run.check(len(reg) == len(expected), f"registry holds {len(reg)} sales, expected {len(expected)}")
    for sale_id, volume in expected.items():
        rec = recs[sale_id]
        run.check(rec.synced, f"sale {sale_id[:8]} synced")
        run.check(rec.volume_cl == volume,
                  f"sale {sale_id[:8]}: {rec.volume_cl} cl settled, pump gave {volume}")
        row = reg.get(sale_id)
        run.check(row is not None and row["volume_cl"] == volume and row["amount_cents"] == rec.amount_cents,
                  f"registry row of sale {sale_id[:8]} matches the pump")


def pump_faults(run: Any) -> None:
    sim = run.sim
    run.ready()
    pumps = {n: sim.pump_line.pump(n) for n in (1, 2, 3, 4)}
    before = {n: _pump_total(p) for n, p in pumps.items()}
    for n in pumps:
        authorize_at(run, n)
        run.sale_ids.append(run.last_sale_id())
    sale_of = dict(zip(pumps, run.sale_ids))
    for p in pumps.values():
        p.flow_cl_per_s = 200.0
    # pump 1: corrupt CRCs, dropped bytes and NAKs on the line while it fills 15.00 L
    with pumps[1].lock:
        pumps[1].faults.corrupt_crc, pumps[1].faults.drop_bytes, pumps[1].faults.nak = 3, 4, 2
    # pump 2: silent for two polls (no reply), then restarts (TX# 0) mid-filling
    with pumps[2].lock:
        pumps[2].faults.mute = 2
    # pump 3: the customer hangs up early, at 7.00 L of 30.00 L wanted
    with pumps[3].lock:
        pumps[3].faults.hang_up_at_cl = 700
    # pump 4: flow stops at 9.00 L, before the 150 L preset; the customer then hangs up
    with pumps[4].lock:
        pumps[4].faults.flow_stop_at_cl = 900
    wants = {1: 1500, 2: 2500, 3: 3000, 4: 2000}
    for n, p in pumps.items():
        run.log(f"driver lifts nozzle 1 on pump {n}")
        p.lift(1)
        p.dispense(wants[n], wait=False)
    _until(lambda: _pump_total(pumps[2]) - before[2] >= 800, 30, "pump 2 never reached 8 L")
    run.log("pump 2 restarts mid-filling")
    pumps[2].restart()
    for n, p in pumps.items():
        try:
            p.dispense(0, timeout=30)
        except TimeoutError:
            pass  # flow stopped by a fault: the customer gives up
        p.hang_up()
        run.log(f"pump {n}: nozzle hung up at {p.total(1)[0] - before[n]} cl")
    moved = {n: _pump_total(p) - before[n] for n, p in pumps.items()}
    run.check(moved[3] == 700 and moved[4] == 900, f"faults stopped the flow where set: {moved}")
    _check_settled(run, {sale_of[n]: moved[n] for n in pumps})


def pump_offline_midsale(run: Any) -> None:
    sim = run.sim
    run.ready()
    pump = sim.pump_line.pump(1)
    before = _pump_total(pump)
    authorize_at(run, 1)
    run.sale_ids.append(run.last_sale_id())
    pump.flow_cl_per_s = 200.0
    pump.lift(1)
    pump.dispense(2000, wait=False)
    _until(lambda: _pump_total(pump) - before >= 500, 30, "no flow")
    mark = sim.panel.mark()
    run.log("pump 1 stops answering (line cut)")
    with pump.lock:
        pump.faults.mute = 10**9
    run.wait("pump_error", mark, timeout=20)
    pump.dispense(0, timeout=30)          # the fuel keeps flowing while the line is down
    pump.hang_up()
    run.log("line to pump 1 restored")
    with pump.lock:
        pump.faults.mute = 0
    moved = _pump_total(pump) - before
    _check_settled(run, {run.sale_ids[0]: moved})
    journal = sim.journal()
    try:
        rec = journal.get(run.sale_ids[0])
    finally:
        journal.close()
    run.check("attendant_check" in rec.flags, "sale flagged for the attendant")
    run.check(rec.receipt_printed, "receipt printed")
    run.check(pump.state in (PumpState.FILLING_COMPLETED, PumpState.MAX_REACHED), "pump filling completed")
