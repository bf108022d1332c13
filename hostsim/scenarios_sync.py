"""Scenario sync-outage: the broker stops during 50 sales and comes back; the registry holds exactly those.

Bank sales go on while the broker is down (their authorization is the acquirer's, over its own line); each
stays unsent in the terminal's journal and goes out, paced, once the terminal is connected again. The
registry must then hold each of the 50 once: none lost, none twice, none it never made.
"""

from __future__ import annotations

import time
from typing import Any

from hostsim.world import card_index

__all__ = ["BEFORE", "DURING", "SALES", "sync_outage"]

SALES = 50
BEFORE, DURING = 10, 30          # sales with the broker up, then down; the rest after it is back
PIN = "1234"
IDLE = ("idle", "idle_bank_only")
VOLUME_CL = 100                  # 1 L each: the sales, not the litres, are what counts here


def _bank_sale(run: Any) -> str:
    """One bank sale at pump 1 (Visa, online PIN, the acquirer approving); its journal id. Without the
    broker the terminal offers bank cards only (idle_bank_only)."""
    run.sim.panel.wait_for(IDLE, 30)
    mark = run.insert(card_index("visa_dda_online_pin"))
    run.wait("enter_pin", mark)
    run.pin(PIN)
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    run.fill(1, 1, VOLUME_CL)
    run.wait(("thank_you", "no_fuel"), mark, timeout=30)
    run.wait(IDLE, mark, timeout=30)
    sale_id = str(run.last_sale_id())
    run.sale_ids.append(sale_id)
    return sale_id


def _unsynced(run: Any, sale_ids: list[str]) -> list[str]:
    journal = run.sim.journal()
    try:
        return [s for s in sale_ids if not journal.get(s).synced]
    finally:
        journal.close()


def _wait_synced(run: Any, sale_ids: list[str], timeout: float) -> list[str]:
    """The sales still unacknowledged once all are, or once the time is up."""
    deadline = time.monotonic() + timeout
    while (left := _unsynced(run, sale_ids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def sync_outage(run: Any) -> None:
    sim = run.sim
    run.ready()
    sales = [_bank_sale(run) for _ in range(BEFORE)]
    run.check(_wait_synced(run, sales, 30) == [], "the sales before the outage reached the registry")
    run.log("broker stopped")
    sim.stop_broker()
    t_down = time.monotonic()
    during = [_bank_sale(run) for _ in range(DURING)]
    run.timings["outage_s"] = time.monotonic() - t_down
    run.check(_unsynced(run, during) == during, "no sale made during the outage was acknowledged")
    run.check(all(sim.registry_sale(s) is None for s in during), "none reached the registry meanwhile")
    run.log("broker started again")
    sim.start_broker()
    t_up = time.monotonic()
    after = [_bank_sale(run) for _ in range(SALES - BEFORE - DURING)]
    sales += during + after
    left = _wait_synced(run, sales, 90)
    run.timings["backlog_synced_s"] = time.monotonic() - t_up
    run.check(left == [], f"{len(left)} of the {SALES} sales still unacknowledged")
    stored = [row["sale_id"] for row in sim.registry_sales()]
    run.check(len(stored) == len(set(stored)), "no sale stored twice")
    run.check(sorted(stored) == sorted(sales), f"the registry holds exactly the {SALES} sales "
              f"({len(set(stored) & set(sales))} of them, {len(set(stored) - set(sales))} others)")
    seq = {row["sale_id"]: row["seq"] for row in sim.registry_sales()}
    order = [seq.get(s) for s in sales]            # in the order the driver made them
    run.check(order[0] is not None and order == list(range(order[0], order[0] + SALES)),
              f"the registry orders the {SALES} sales as the terminal made them, no gap (seq {order})")
    run.log(f"registry holds {len(stored)} sales of the terminal")
