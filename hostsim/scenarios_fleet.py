"""The fleet-account scenarios of issue 14, end to end: the terminal, pcscd, the DART pump line and the
registry, each run as `forecourt sim --headless --scenario NAME --json`. Their checks are the evidence.

Part one here (day limit, products, two wallets, odometer, time window); part two and the helpers in
hostsim.scenarios_fleet2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from hostsim.scenarios_fleet2 import (
    FLEET_SCENARIOS_2,
    authorize,
    declined,
    insert_card,
    registry_db,
    sale,
    settle,
    utcnow,
    wallet_ledger,
)
from registry.fleet import admin
from registry.models import Account, Usage, Vehicle

__all__ = ["FLEET_SCENARIOS", "FLEET_SIM_OPTIONS"]


# -- 1. fleet-daily-limit ---------------------------------------------------------------------------
DAY_PAN, DAY_ACCOUNT, DAY_WALLET = "7077004000000013", 103, 103


def _day_used(sim: Any, account_id: int) -> int | None:
    with registry_db(sim) as (s, _):
        account = s.get(Account, account_id)
        if account is None:
            return None
        local = dt.datetime.now(ZoneInfo(account.timezone))
        key = f"D{local:%Y-%m-%d}"
        row = s.scalar(select(Usage).where(Usage.scope == "account", Usage.scope_id == account_id,
                                           Usage.period_key == key))
        return None if row is None else row.volume_cl


def fleet_daily_limit(run: Any) -> None:
    """40 L a day, 1000 L a month, 25 L already today: the pump is preset to the day's 15 L and stops
    there; the day is then used up."""
    sim = run.sim
    run.ready()
    run.check(_day_used(sim, DAY_ACCOUNT) == 2500, "25 L used today before the sale")
    mark = insert_card(run, DAY_PAN)
    screen = authorize(run, mark)
    run.check(screen["screen"] == "lift_nozzle" and screen["fields"].get("volume_cl") == "1500",
              f"released for the day's remaining 15 L, not the month's 975 L: {screen['fields']}")
    pump = sim.pump_line.pump(1)
    pump.lift(1)
    got = pump.dispense(2500, timeout=60)
    pump.hang_up()
    run.log(f"driver wanted 25 L, the preset stopped the pump at {got / 100:.2f} L")
    rec = settle(run, mark)
    run.remove()
    run.wait("idle", mark)
    run.check(got == 1500 and rec.volume_cl == 1500, f"filled to the 15 L allowance ({rec.volume_cl})")
    run.check(_day_used(sim, DAY_ACCOUNT) == 4000, "the day's 40 L are used")
    led = wallet_ledger(sim, DAY_WALLET)
    run.check(led["balance"] == led["sum"] == -4000, f"the litre wallet owes 40 L: {led}")
    mark = insert_card(run, DAY_PAN)
    declined(run, mark, authorize(run, mark), "limit_exhausted")


# -- 2. fleet-product-not-allowed -------------------------------------------------------------------
DIESEL_PAN, DIESEL_WALLET = "7077004000000021", 104


def fleet_product_not_allowed(run: Any) -> None:
    """Wallets allowing diesel only, at pump 1 (diesel on nozzle 1, petrol 95 on nozzle 2): only nozzle 1
    is released; nozzle 2 lifted gives nothing; diesel then flows on nozzle 1."""
    sim = run.sim
    run.ready()
    mark = insert_card(run, DIESEL_PAN)
    screen = authorize(run, mark)
    pump = sim.pump_line.pump(1)
    run.check(screen["screen"] == "lift_nozzle", f"approved, got {screen['fields']}")
    run.check(pump.allowed == {1}, f"the pump released nozzle 1 only: {sorted(pump.allowed)}")
    run.log("driver lifts nozzle 2 (petrol 95)")
    pump.lift(2)
    got = pump.dispense(500, timeout=10)
    pump.hang_up()
    run.log(f"{got / 100:.2f} L of petrol 95 flowed")
    run.check(got == 0, f"nothing flows from nozzle 2 ({got} cl)")
    run.fill(1, 1, 1000)
    rec = settle(run, mark)
    run.remove()
    run.wait("idle", mark)
    run.check(rec.synced and rec.nozzle == 1 and rec.product == "diesel" and rec.volume_cl == 1000,
              f"the sale is 10 L of diesel from nozzle 1 ({rec.nozzle}, {rec.product}, {rec.volume_cl})")
    led = wallet_ledger(sim, DIESEL_WALLET)
    run.check(led["balance"] == led["sum"] == 9000, f"the diesel wallet paid 10 L: {led}")


# -- 3. fleet-two-wallets ---------------------------------------------------------------------------
TWO_PAN, LITRES_WALLET, MONEY_WALLET = "7077004000000039", 105, 106


def _pick(run: Any, mark: int, digit: str) -> None:
    """Pump 2 offers diesel (1) and AdBlue (2) with different allowances: the driver picks one."""
    run.wait("select_pump", mark)
    run.sim.panel.press("2")
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("choose_product", mark, timeout=30)
    run.log(f"driver picks product {digit}")
    run.sim.panel.press(digit)


def fleet_two_wallets(run: Any) -> None:
    """A litre wallet (diesel only, first) and a money wallet (anything, second): diesel is debited in
    litres from the first, AdBlue in cents from the second; each balance equals its movements."""
    sim = run.sim
    run.ready()
    pump = sim.pump_line.pump(2)
    recs = []
    for digit, nozzle, volume in (("1", 1, 1000), ("2", 2, 500)):
        mark = insert_card(run, TWO_PAN)
        _pick(run, mark, digit)
        screen = run.wait(("lift_nozzle", "declined"), mark, timeout=30)
        run.check(screen["screen"] == "lift_nozzle", f"approved, got {screen['fields']}")
        run.check(pump.allowed == {nozzle}, f"nozzle {nozzle} released alone: {sorted(pump.allowed)}")
        run.fill(2, nozzle, volume)
        recs.append(settle(run, mark))
        run.remove()
        run.wait("idle", mark)
    diesel, adblue = recs
    run.check(diesel.product == "diesel" and adblue.product == "adblue", "a diesel and an AdBlue sale")
    litres, money = wallet_ledger(sim, LITRES_WALLET), wallet_ledger(sim, MONEY_WALLET)
    run.log(f"litre wallet {litres}")
    run.log(f"money wallet {money}")
    run.check(litres["movements"][1:] == [("sale", -1000, diesel.id)], "diesel: 10 L from the litre wallet")
    run.check(money["movements"][1:] == [("sale", -(adblue.amount_cents or 0), adblue.id)],
              f"AdBlue: {adblue.amount_cents} cents from the money wallet")
    run.check(litres["balance"] == litres["sum"] == 9000, "litre wallet balance equals its movements")
    run.check(money["balance"] == money["sum"] == 20000 - (adblue.amount_cents or 0),
              "money wallet balance equals its movements")


# -- 4. fleet-odometer-backwards --------------------------------------------------------------------
ODO_PAN, VEHICLE, VEHICLE_ID = "7077004000000047", "4711", 101
LAST_KM, LOWER_KM, HIGHER_KM = 120000, 119500, 120350


def fleet_odometer_backwards(run: Any) -> None:
    """The account asks for the odometer and the vehicle; vehicle 4711 last read 120000 km: 119500 is
    declined (odometer_invalid), 120350 approved and stored with the sale and the vehicle."""
    sim = run.sim
    run.ready()
    mark = insert_card(run, ODO_PAN)
    screen = authorize(run, mark, answers={"odometer": str(LOWER_KM), "vehicle": VEHICLE})
    asked = [s["fields"].get("question") for s in sim.panel.screens[mark:] if s["screen"] == "question"
             and s["fields"].get("answer", "") == ""]
    run.check(asked == ["odometer", "vehicle"], f"the terminal asked the account's prompts: {asked}")
    declined(run, mark, screen, "odometer_invalid")
    mark = insert_card(run, ODO_PAN)
    screen = authorize(run, mark, answers={"odometer": str(HIGHER_KM), "vehicle": VEHICLE})
    run.check(screen["screen"] == "lift_nozzle", f"a plausible reading approved, got {screen['fields']}")
    run.fill(1, 1, 1000)
    rec = settle(run, mark)
    run.remove()
    run.wait("idle", mark)
    reg = sim.registry_sale(rec.id)
    run.check(reg is not None and reg["odometer_km"] == HIGHER_KM and reg["vehicle_id"] == VEHICLE_ID,
              f"the sale stores {HIGHER_KM} km for vehicle 4711: {reg and reg['odometer_km']}")
    with registry_db(sim) as (s, _):
        vehicle = s.scalar(select(Vehicle).where(Vehicle.number == VEHICLE))
        km = None if vehicle is None else vehicle.odometer_km
    run.check(km == HIGHER_KM, f"vehicle 4711 now reads {km} km")


# -- 5. fleet-time-window ---------------------------------------------------------------------------
WINDOW_PAN, WINDOW_ACCOUNT = "7077004000000054", 107
ALL_DAYS = 0b1111111


def _set_window(run: Any, start: int, end: int) -> None:
    with registry_db(run.sim) as (s, _):
        now = utcnow()
        admin.clear_windows(s, "account", WINDOW_ACCOUNT, actor="scenario", now=now)
        admin.add_window(s, "account", WINDOW_ACCOUNT, ALL_DAYS, start, end, actor="scenario", now=now)
        s.commit()
    run.log(f"operator sets the account's window {start // 60:02}:{start % 60:02}"
            f"-{end // 60:02}:{end % 60:02}")


def fleet_time_window(run: Any) -> None:
    """Windows computed from the account's local time now (America/New_York): one that excludes now
    declines outside_time_window, one that includes it approves."""
    sim = run.sim
    run.ready()
    with registry_db(sim) as (s, _):
        account = s.get(Account, WINDOW_ACCOUNT)
        zone = ZoneInfo(account.timezone if account is not None else "UTC")
    local = dt.datetime.now(zone)
    minute = local.hour * 60 + local.minute
    run.log(f"account's local time {local:%a %H:%M} ({zone.key})")
    _set_window(run, (minute + 120) % 1440, (minute + 180) % 1440)
    mark = insert_card(run, WINDOW_PAN)
    declined(run, mark, authorize(run, mark), "outside_time_window")
    _set_window(run, (minute - 60) % 1440, (minute + 60) % 1440)
    rec = sale(run, WINDOW_PAN)
    run.check(rec.synced and rec.volume_cl == 1000, "inside the window: 10 L sold")


FLEET_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "fleet-daily-limit": fleet_daily_limit,
    "fleet-product-not-allowed": fleet_product_not_allowed,
    "fleet-two-wallets": fleet_two_wallets,
    "fleet-odometer-backwards": fleet_odometer_backwards,
    "fleet-time-window": fleet_time_window,
    **FLEET_SCENARIOS_2,
}

# the scenarios on two pumps
FLEET_SIM_OPTIONS: dict[str, dict[str, Any]] = {
    "fleet-two-wallets": {"terminal_pumps": (1, 2)},
    "fleet-two-pumps-one-wallet": {"terminal_pumps": (1, 2)},
}
