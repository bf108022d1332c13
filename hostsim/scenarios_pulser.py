"""Issue 17 scenarios: pulser dispensers and the terminal's own switches, on the simulator's GPIO header.

- pulser-sale: pump 4 on the terminal's GPIO, preset 20 L; the terminal counts the meter's pulses and
  closes the valve (fast stage first, then the slow one) at exactly 2,000 pulses: 20.00 L.
- pulser-node-restart: pump 3 behind a pump node; the node restarts mid-filling; the sale settles once
  from what the node had saved, the registry hears of the restart, and a second restart changes nothing.
- tamper-open: the door opens: the terminal goes out of service, the registry gets an alarm, a card
  inserted starts no sale; the door shuts: in service again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from drivers.pulser.meter import amount_for
from firmware.receipt import format_litres
from hostsim.pulser_site import GPIO_PUMP, NODE_PUMP, PINS

__all__ = ["PULSER_SCENARIOS", "PULSER_SIM_OPTIONS", "release"]

PRICES = {NODE_PUMP: 1659, GPIO_PUMP: 1789}     # fixtures/seed.toml: pump 3 diesel, pump 4 petrol95


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def release(run: Any, pump: int, litres: str) -> int:
    """A driver inserts the ACME fleet card, picks the pump, keys the PIN and a preset; returns the mark."""
    mark = run.insert(0)
    run.wait("select_pump", mark)
    run.sim.panel.press(str(pump))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("enter_preset", mark, timeout=30)
    run.log(f"driver keys {litres} litres")
    run.sim.panel.press(*litres, "ENTER")
    lift = run.wait("lift_nozzle", mark)
    run.check(lift["fields"].get("volume_cl") == str(int(litres) * 100),
              f"released for {litres} L, got {lift['fields']}")
    return mark


def _settled(run: Any, mark: int, pump: int) -> Any:
    run.wait("thank_you", mark, timeout=40)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    rec = run.wait_synced(sale_id, timeout=40)
    run.check(rec.synced, f"sale {sale_id[:8]} reached the registry")
    run.check(rec.pump == pump, f"the sale is pump {pump}'s")
    row = run.sim.registry_sale(sale_id)
    figures = (rec.volume_cl, rec.amount_cents)
    run.check(row is not None and (row["volume_cl"], row["amount_cents"]) == figures,
              "the registry holds the terminal's figures")
    return rec


def _journaled(sim: Any) -> int:
    journal = sim.journal()
    try:
        return len(journal.all_sales())
    finally:
        journal.close()


def pulser_sale(run: Any) -> None:
    site = run.sim.site
    run.ready()
    mark = release(run, GPIO_PUMP, "20")
    meter = site.meter
    run.log(f"driver lifts the nozzle of pump {GPIO_PUMP}")
    meter.lift()
    run.wait("hang_up", mark, timeout=60)
    run.log(f"{format_litres(meter.pulses)} L of pulses given by the meter: the valve closed")
    time.sleep(0.5)                      # the meter is still: nothing more flows through the closed valve
    run.check(meter.pulses == 2000, f"the meter gave {meter.pulses} pulses, expected exactly 2000")
    meter.hang()
    run.log("driver hangs up the nozzle")
    rec = _settled(run, mark, GPIO_PUMP)
    run.check(rec.volume_cl == 2000, f"20.00 L settled, got {rec.volume_cl} cl")
    run.check(rec.amount_cents == amount_for(2000, PRICES[GPIO_PUMP]), f"amount {rec.amount_cents}")
    run.check(not rec.flags, f"no flags, got {rec.flags}")
    run.remove()


def pulser_node_restart(run: Any) -> None:
    node = run.sim.site.node
    run.ready()
    _until(lambda: node.core.k_milli != 0, 10, "the node was never given its K-factor")
    before = node.core.totals()
    mark = release(run, NODE_PUMP, "20")
    run.log(f"driver lifts the nozzle of pump {NODE_PUMP}")
    node.lift()
    _until(lambda: node.core.count >= 800, 30, "the node never counted 8 L")
    run.log("the pump node restarts mid-filling (power cycle)")
    counted = node.core.count
    node.restart()
    saved = node.core.volume_cl()
    run.log(f"the node booted with {format_litres(saved)} L saved for the filling")
    run.check(node.core.state == 5, f"the interrupted filling ended as completed, state {node.core.state}")
    run.wait("hang_up", mark, timeout=30)
    node.hang()
    run.log("driver hangs up the nozzle")
    rec = _settled(run, mark, NODE_PUMP)
    # the node saves at most every 200 ms while pulses come: what flowed since its last save is not sold
    lost_at_most = node.flow * node.node.save_ms / 1000 + 1
    run.check(0 < saved <= counted and counted - saved <= lost_at_most,
              f"the node saved {saved} cl of the {counted} cl it had counted")
    run.check(rec.volume_cl == saved, f"the sale settled {rec.volume_cl} cl, the node saved {saved} cl")
    run.check(rec.amount_cents == amount_for(saved, PRICES[NODE_PUMP]), f"amount {rec.amount_cents}")
    run.check(node.core.totals() == (before[0] + saved, before[1] + amount_for(saved, PRICES[NODE_PUMP])),
              f"the node's totals moved by the filling once: {before} -> {node.core.totals()}")
    _until(lambda: any(e["code"] == "pump_node_restarted" for e in run.sim.registry_events()), 20,
           "the registry was not told the pump node restarted")
    run.log("the registry holds a pump_node_restarted warning")
    run.log("the node restarts again")
    node.restart()
    time.sleep(1.5)
    sales = [s for s in run.sim.registry_sales() if s["pump"] == NODE_PUMP]
    run.check(len(sales) == 1, f"one sale of pump {NODE_PUMP} at the registry, got {len(sales)}")
    run.check(node.core.totals()[0] == before[0] + saved, "a second restart changes no total")
    run.remove()


def tamper_open(run: Any) -> None:
    sim = run.sim
    header = sim.site.header
    run.ready()
    sales_before = _journaled(sim)
    mark = sim.panel.mark()
    run.log("the terminal's door opens")
    header.drive(PINS["door"], True)
    run.wait("out_of_service", mark, timeout=10)
    _until(lambda: any(e["code"] == "door_open" and e["severity"] == "alarm" for e in sim.registry_events()),
           20, "no door_open alarm reached the registry")
    run.log("the registry holds a door_open alarm")
    header.wait_output(PINS["led_fault"], True, 5)
    run.check(not header.level(PINS["led_ready"], default=False), "the ready LED is off")
    mark = run.insert(0)
    time.sleep(3.0)
    shown = [s["screen"] for s in sim.panel.screens[mark:]]
    run.check("enter_pin" not in shown and "reading" not in shown, f"no sale began: {shown}")
    run.check(_journaled(sim) == sales_before, "no sale journaled")
    run.remove()
    mark = sim.panel.mark()
    run.log("the door shuts")
    header.drive(PINS["door"], False)
    run.wait("idle", mark, timeout=10)
    _until(lambda: any(e["code"] == "door_closed" for e in sim.registry_events()), 20,
           "no door_closed event reached the registry")
    header.wait_output(PINS["led_ready"], True, 5)


PULSER_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "pulser-sale": pulser_sale,
    "pulser-node-restart": pulser_node_restart,
    "tamper-open": tamper_open,
}
PULSER_SIM_OPTIONS: dict[str, dict[str, Any]] = {
    name: {"pulser": True, "terminal_pumps": (1, NODE_PUMP, GPIO_PUMP)} for name in PULSER_SCENARIOS
}
