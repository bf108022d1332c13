"""Scripted scenarios: what a driver does at the pump, and what must then hold.

Each scenario drives a started Simulator and returns a result dict; `checks` lists what failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from contracts.pump import PumpState
from firmware.programs.bank.receipt import held_cents
from firmware.receipt import format_litres
from firmware.sale.record import SaleRecord
from hostsim.scenarios_bank import BANK_SCENARIOS
from hostsim.scenarios_central import acl_cross_device
from hostsim.scenarios_config import config_rollback
from hostsim.scenarios_fleet import FLEET_SCENARIOS, FLEET_SIM_OPTIONS
from hostsim.scenarios_loyalty import ISSUE15_SCENARIOS, ISSUE15_SIM_OPTIONS
from hostsim.scenarios_provision import provision_new_device
from hostsim.scenarios_pulser import PULSER_SCENARIOS, PULSER_SIM_OPTIONS
from hostsim.scenarios_pump import pump_faults, pump_offline_midsale
from hostsim.scenarios_purse import PURSE_SCENARIOS, PURSE_SIM_OPTIONS
from hostsim.scenarios_sync import sync_outage
from hostsim.scenarios_update import update_rollback
from hostsim.scenarios_usb import USB_SCENARIOS
from hostsim.world import Simulator, load_cards

__all__ = ["SCENARIOS", "SIM_OPTIONS", "Run", "sale_view"]

AUTHORIZE = b"\x06"
DEFAULT_ANSWERS = ("choose_product", "enter_preset")   # Run.wait answers these with ENTER


def sale_view(rec: SaleRecord) -> dict[str, Any]:
    status = "synced" if rec.synced else rec.state
    return {"id": rec.id, "card_masked": rec.card_masked, "pump": rec.pump, "nozzle": rec.nozzle,
            "product": rec.product, "litres": format_litres(rec.volume_cl or 0),
            "volume_cl": rec.volume_cl or 0,
            "amount": f"{(rec.amount_cents or 0) / 100:.2f}", "amount_cents": rec.amount_cents or 0,
            "unit_price_milli": rec.price_milli, "status": status, "reason": rec.reason,
            "recovered": rec.recovered, "flags": list(rec.flags), "receipt_printed": rec.receipt_printed,
            "kind": rec.program,
            **({"preauthorized_cents": held_cents(rec), "auth_code": rec.reference,
                "emv": dict(rec.data)} if rec.program == "bank" else {})}


class Run:
    """Helpers a scenario uses, and the transcript it leaves."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.transcript: list[str] = []
        self.checks: list[str] = []
        self.timings: dict[str, float] = {}
        self.sale_ids: list[str] = []
        self._t0 = time.monotonic()
        self._answered: set[int] = set()     # ids of prompt screens a wait answered or passed
        sim.panel.listeners.append(lambda s: self.log("screen: " + " | ".join(s.get("lines", []))))

    def log(self, line: str) -> None:
        self.transcript.append(f"{time.monotonic() - self._t0:7.3f}  {line}")

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.checks.append(what)

    def card(self, index: int) -> Any:
        return load_cards()[index].make()

    def ready(self, timeout: float = 30.0) -> None:
        self.sim.panel.wait_for("idle", timeout)
        deadline = time.monotonic() + timeout
        for n in self.sim.terminal_pumps:
            if n in self.sim.pulser_pumps:
                continue         # pulser pumps: prices stay in the terminal; the idle screen is up
            while self.sim.pump_line.pump(n).state == PumpState.NOT_PROGRAMMED:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pump {n} was never programmed with prices")
                time.sleep(0.02)

    def insert(self, index: int) -> int:
        profile = load_cards()[index]
        mark = self.sim.panel.mark()
        self.log(f"driver inserts card: {profile.name}")
        self.sim.cards.insert(profile.make())
        return mark

    def remove(self) -> None:
        self.log("driver removes card")
        self.sim.cards.remove()

    def pin(self, digits: str) -> None:
        self.log("driver enters PIN " + "*" * len(digits))
        self.sim.panel.press(*digits, "ENTER")

    def wait(self, screens: str | tuple[str, ...], since: int, timeout: float = 20.0) -> dict[str, Any]:
        """The first of these screens shown since the mark. A driver's choice on the way (the product, a
        preset) the scenario does not wait for is answered with ENTER: every nozzle, the granted maximum."""
        wanted = (screens,) if isinstance(screens, str) else screens
        answered = tuple(s for s in DEFAULT_ANSWERS if s not in wanted)
        panel = self.sim.panel
        while True:
            screen = panel.wait_for((*wanted, *answered), timeout, since)
            at = next(i for i, s in enumerate(panel.screens) if s is screen)
            seen = id(screen) in self._answered
            self._answered.add(id(screen))
            if screen["screen"] in wanted:
                return screen
            since = at + 1
            if seen or (at and panel.screens[at - 1]["screen"] == screen["screen"]):
                continue       # answered by an earlier wait, or the prompt shown again as keys come in
            self.log(f"driver presses ENTER on {screen['screen']}")
            panel.press("ENTER")

    def fill(self, pump: int, nozzle: int, volume_cl: int) -> None:
        p = self.sim.pump_line.pump(pump)
        self.log(f"driver lifts nozzle {nozzle} on pump {pump}")
        p.lift(nozzle)
        got = p.dispense(volume_cl, timeout=60)
        self.log(f"{format_litres(got)} L flowed")
        p.hang_up()
        self.log("driver hangs up the nozzle")

    def wait_synced(self, sale_id: str, timeout: float = 20.0) -> SaleRecord:
        deadline = time.monotonic() + timeout
        journal = self.sim.journal()
        try:
            while True:
                rec = journal.get(sale_id)
                if rec.synced or time.monotonic() > deadline:
                    return rec
                time.sleep(0.02)
        finally:
            journal.close()

    def last_sale_id(self) -> str:
        journal = self.sim.journal()
        try:
            sales = journal.all_sales()
        finally:
            journal.close()
        if not sales:
            raise TimeoutError("the terminal journaled no sale")
        return sales[-1].id

    def authorize_sent(self, pump: int) -> bool:
        return any(cmd[:1] == AUTHORIZE for cmd in self.sim.pump_line.sent_commands(pump))


def fleet_happy(run: Run) -> None:
    run.ready()
    t0 = time.monotonic()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.timings["card_to_authorized_s"] = time.monotonic() - t0
    run.check(run.sim.pump_line.pump(1).state == PumpState.AUTHORIZED, "pump 1 is authorized")
    run.fill(1, 1, 2000)
    t1 = time.monotonic()
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    rec = run.wait_synced(sale_id)
    run.timings["hangup_to_ack_s"] = time.monotonic() - t1
    run.remove()
    run.sim.printer.wait_receipts(1, 10)
    run.check(rec.synced, "sale acknowledged by the registry")
    run.check(rec.volume_cl == 2000, "20.00 L settled")
    run.check(rec.amount_cents == (2000 * 1659 + 500) // 1000, "amount is 20.00 L x 1.659")
    reg = run.sim.registry_sale(sale_id)
    run.check(reg is not None and reg["volume_cl"] == 2000, "registry holds the sale with 20.00 L")


def fleet_declined_limit(run: Run) -> None:
    run.ready()
    mark = run.insert(1)
    run.wait("enter_pin", mark)
    run.pin("1234")
    screen = run.wait(("declined", "lift_nozzle"), mark)
    run.check(screen["screen"] == "declined" and screen["fields"].get("reason") == "limit_exhausted",
              "declined for an exhausted limit")
    run.remove()
    run.wait("idle", mark)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    run.check(not run.authorize_sent(1), "pump 1 never authorized")
    run.check(run.sim.registry_sale(sale_id) is None, "nothing charged in the registry")


def fleet_wrong_pin(run: Run) -> None:
    run.ready()
    reasons, tries = [], []
    for attempt in range(4):
        mark = run.insert(2)
        run.wait("enter_pin", mark)
        run.pin("9999" if attempt < 3 else "1234")
        screen = run.wait(("declined", "lift_nozzle"), mark)
        reasons.append(screen["fields"].get("reason"))
        tries.append(screen["fields"].get("tries"))        # the registry's count, on a wrong PIN only
        run.remove()
        run.wait("idle", mark)
        run.sale_ids.append(run.last_sale_id())
    run.check(reasons == ["wrong_pin", "wrong_pin", "pin_tries_exceeded", "card_blocked"],
              f"decline reasons were {reasons}")
    run.check(tries == ["2", "1", None, None], f"tries left shown were {tries}")
    card = run.sim.registry_card("707700******0035")
    run.check(card is not None and card["status"] == "temp_blocked",
              "card blocked in the registry until an operator unblocks it")
    run.check(not run.authorize_sent(1), "pump 1 never authorized")


def fleet_driver_choices(run: Run) -> None:
    """The driver picks German on the idle screen (digit 2), keys 10 litres below the grant, fills to that
    preset, is asked to hang up; the next driver is greeted in the terminal's language again."""
    run.ready()
    mark = run.sim.panel.mark()
    run.log("driver presses 2 on the idle screen")
    run.sim.panel.press("2")
    idle = run.wait("idle", mark)
    run.check(idle["view"]["language"] == "de", "idle shown again in German")
    mark = run.insert(0)
    pin = run.wait("enter_pin", mark)
    run.check(pin["view"]["language"] == "de", "the sale's screens in German")
    run.pin("1234")
    run.wait("enter_preset", mark, timeout=30)
    run.log("driver keys 10 litres")
    run.sim.panel.press("1", "0", "ENTER")
    lift = run.wait("lift_nozzle", mark)
    run.check(lift["fields"].get("volume_cl") == "1000", f"released for 10 L, got {lift['fields']}")
    pump = run.sim.pump_line.pump(1)
    run.log("driver lifts nozzle 1 on pump 1")
    pump.lift(1)
    run.log(f"{format_litres(pump.dispense(2000, timeout=60))} L flowed: the preset stopped the pump")
    run.wait("hang_up", mark, timeout=30)
    pump.hang_up()
    run.log("driver hangs up the nozzle")
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    rec = run.wait_synced(sale_id)
    run.check(rec.volume_cl == 1000, f"10.00 L settled, got {rec.volume_cl}")
    run.check(rec.preset is not None and rec.preset.value == 1000, "the driver's preset journaled")
    mark = run.sim.panel.mark()
    run.remove()
    idle = run.wait("idle", mark)
    run.check(idle["view"]["language"] == "en", "the next driver is greeted in English")


SCENARIOS: dict[str, Callable[[Run], None]] = {
    "fleet-happy": fleet_happy,
    "fleet-declined-limit": fleet_declined_limit,
    "fleet-wrong-pin": fleet_wrong_pin,
    "fleet-driver-choices": fleet_driver_choices,
    "pump-faults": pump_faults,
    "pump-offline-midsale": pump_offline_midsale,
    **BANK_SCENARIOS,
    # issue 13: the central part
    "acl-cross-device": acl_cross_device,
    "config-rollback": config_rollback,
    "provision-new-device": provision_new_device,
    "sync-outage": sync_outage,
    "update-rollback": update_rollback,
    **USB_SCENARIOS,
    **FLEET_SCENARIOS,      # issue 14
    **ISSUE15_SCENARIOS,    # issue 15
    **PURSE_SCENARIOS,      # issue 18: wallets on the chip
    **PULSER_SCENARIOS,     # issue 17: pulser pumps, a pump node, the door switch
}

# Simulator options a scenario needs (defaults otherwise).
SIM_OPTIONS: dict[str, dict[str, Any]] = {
    "pump-faults": {"terminal_pumps": (1, 2, 3, 4)},
    **FLEET_SIM_OPTIONS,
    **ISSUE15_SIM_OPTIONS,
    **PURSE_SIM_OPTIONS,
    **PULSER_SIM_OPTIONS,
}
