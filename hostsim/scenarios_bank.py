"""Bank-card scenarios: an EMV card (or a swipe) at the pump, the simulated acquirer deciding.

What must hold: the pump is preset to the amount the acquirer approved and released only after the card
accepted the approval; what was dispensed reaches the acquirer once as a 0220 completion, or the hold
is released once with a 0420 reversal; nothing is charged when the bank or the card says no.
"""

from __future__ import annotations

import time
from typing import Any

from contracts.cards import mask_pan
from contracts.pump import PumpState
from firmware.sale.record import Preset
from hostsim.world import card_index

__all__ = ["BANK_SCENARIOS", "bank_view"]

PIN = "1234"
PRICE_MILLI = 1659          # pump 1 nozzle 1 in fixtures/seed.toml


def _insert(run: Any, profile: str) -> int:
    return int(run.insert(card_index(profile)))


def _advices(run: Any, mti: str, timeout: float = 15.0) -> list[dict[str, str]]:
    """Wait for the acquirer to have received advices of this MTI (first send or repeat)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [a for a in run.sim.acquirer.advices if a["t"][:3] == mti[:3]]
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _settled(run: Any, expected: int, timeout: float = 15.0) -> int:
    """What the acquirer settled from the completions, once it reaches the expected figure (or time is up)."""
    deadline = time.monotonic() + timeout
    while run.sim.acquirer.settled_total != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(run.sim.acquirer.settled_total)


def _sale(run: Any) -> Any:
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    journal = run.sim.journal()
    try:
        return journal.get(sale_id)
    finally:
        journal.close()


def _declined(run: Any, profile: str, pin: str | None, reason: str) -> Any:
    run.ready()
    mark = _insert(run, profile)
    if pin is not None:
        run.wait(("enter_pin", "enter_pin_last"), mark)
        run.pin(pin)
    screen = run.wait(("declined", "lift_nozzle_amount", "card_removed"), mark, timeout=30)
    run.check(screen["fields"].get("reason") == reason, f"declined for {reason}, got {screen['fields']}")
    run.remove()
    run.wait("idle", mark)
    run.check(not run.authorize_sent(1), "pump 1 never authorized")
    return _sale(run)


def _fill_and_settle(run: Any, mark: int, volume_cl: int) -> Any:
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.check(run.sim.pump_line.pump(1).state == PumpState.AUTHORIZED, "pump 1 is authorized")
    run.remove()
    run.fill(1, 1, volume_cl)
    run.wait(("thank_you", "no_fuel"), mark, timeout=30)
    rec = _sale(run)
    run.sim.printer.wait_receipts(1, 10)
    return rec


def bank_happy(run: Any) -> None:
    """Visa, DDA, online PIN under DUKPT: pre-authorization 150.00, 20 L dispensed, 0220 for 33.18."""
    run.ready()
    mark = _insert(run, "visa_dda_online_pin")
    run.wait("enter_pin", mark)
    run.pin(PIN)
    rec = _fill_and_settle(run, mark, 2000)
    amount = (2000 * PRICE_MILLI + 500) // 1000
    run.check(rec.program == "bank" and rec.preset == Preset.amount(15000),
              "pump preset to the 150.00 approved")
    run.check(rec.amount_cents == amount, f"charged {amount} cents for 20.00 L")
    bank = rec.data
    run.check(bank.get("cryptogram") == "TC" and bank.get("arc") == "00", "card accepted the approval (TC)")
    run.check(bank.get("issuer_authenticated") is True, "card authenticated the issuer (ARPC)")
    req = run.sim.acquirer.requests[-1]
    run.check(req.get("22") == "051", "0100 sent as chip with PIN")
    run.check(req.get("61", "")[:1] == "1" and req.get("48", "").startswith("R6105"),
              "0100 flagged unattended, partial approval supported")
    done = _advices(run, "0220")
    run.check(len(done) == 1 and done[0]["4"] == f"{amount:012d}", "one 0220 for the dispensed amount")
    run.check(_settled(run, amount) == amount, f"the acquirer settled the pump's {amount} cents")
    [settled] = run.sim.acquirer.settlements.values()
    [line] = settled["fuel"]
    run.check((line.product, line.quantity_milli, line.unit_price_milli, line.amount) == ("019", 20_000,
              PRICE_MILLI, amount), "the 0220 names the diesel, the litres and the price the pump counted")
    run.wait_synced(rec.id)


def bank_partial(run: Any) -> None:
    """The acquirer approves 50.00 of 150.00: the pump stops at 50.00, the 0220 says what flowed."""
    run.sim.acquirer_rules = lambda req: "partial:5000" if req["t"] == "0100" else "approve"
    run.ready()
    mark = _insert(run, "visa_dda_online_pin")
    run.wait("enter_pin", mark)
    run.pin(PIN)
    run.wait("approved_up_to", mark, timeout=30)
    rec = _fill_and_settle(run, mark, 5000)            # the driver wants 50 L; the preset stops it sooner
    run.check(rec.preset == Preset.amount(5000), "pump preset to the 50.00 approved")
    run.check(0 < (rec.amount_cents or 0) <= 5000, f"dispensed within 50.00, got {rec.amount_cents}")
    done = _advices(run, "0220")
    run.check(len(done) == 1 and int(done[0]["4"]) == rec.amount_cents, "0220 for what flowed")
    run.check(_settled(run, rec.amount_cents or 0) == rec.amount_cents, "the acquirer settled what flowed")
    run.check(bool(rec.data.get("partial")), "sale marked as a partial approval")


def bank_declined(run: Any) -> None:
    run.sim.acquirer_rules = lambda req: "decline:51" if req["t"] == "0100" else "approve"
    rec = _declined(run, "visa_dda_online_pin", PIN, "insufficient_funds")
    run.check(rec.data.get("cryptogram") == "AAC", "card closed with an AAC")
    run.check(not _advices(run, "0220", timeout=1) and not _advices(run, "0420", timeout=0),
              "no advice: nothing was held")


def bank_wrong_pin(run: Any) -> None:
    rec = _declined(run, "visa_dda_online_pin", "9999", "wrong_pin")
    run.check(rec.data.get("response_code") == "55", "acquirer answered 55")
    run.check(run.sim.acquirer.decisions[-1]["code"] == "55", "the acquirer's own PIN check failed")


def bank_host_timeout(run: Any) -> None:
    """No 0110 within the timeout: declined on screen, and the possible approval is reversed (0420, 68)."""
    run.sim.acquirer_rules = lambda req: "timeout" if req["t"] == "0100" else "approve"
    rec = _declined(run, "visa_dda_online_pin", PIN, "host_timeout")
    rev = _advices(run, "0420")
    run.check(len(rev) == 1 and rev[0]["39"] == "68", "one reversal, reason 68 (response too late)")
    run.check(rec.amount_cents in (None, 0), "nothing charged")


def bank_card_removed(run: Any) -> None:
    """The driver pulls the card while the bank approves: no second GENERATE AC, the hold is reversed."""
    def pull_then_approve(req: dict[str, str]) -> str:
        if req["t"] == "0100":
            run.remove()
            time.sleep(0.8)             # pcscd notices the removal before the answer reaches the card
        return "approve"

    run.sim.acquirer_rules = pull_then_approve
    run.ready()
    mark = _insert(run, "visa_dda_online_pin")
    run.wait("enter_pin", mark)
    run.pin(PIN)
    run.wait("card_removed", mark, timeout=30)
    run.wait("idle", mark)
    rec = _sale(run)
    run.check(rec.state == "declined" and rec.reason == "card_removed", "sale declined: card removed")
    run.check(not run.authorize_sent(1), "pump 1 never authorized")
    rev = _advices(run, "0420")
    run.check(len(rev) == 1 and rev[0]["39"] == "06", "approval reversed once (0420)")


def bank_fallback_magstripe(run: Any) -> None:
    """The chip fails (6F00 to everything): the terminal asks for a swipe, 0100 goes out as fallback (801)."""
    run.ready()
    index = card_index("visa_chip_broken")
    mark = run.insert(index)
    run.wait("swipe_card", mark)
    run.sim.swipe.wait_connected(5)
    run.log("driver swipes the card")
    run.sim.swipe.swipe(run.card(index).track2)
    run.wait("enter_pin", mark)
    run.pin(PIN)
    rec = _fill_and_settle(run, mark, 1000)
    req = run.sim.acquirer.requests[-1]
    run.check(req.get("22") == "801" and "35" in req and "55" not in req, "0100 flagged as fallback, track 2")
    run.check("2" not in req and "14" not in req, "track 2 alone: no separate PAN or expiry beside it")
    run.check(rec.data.get("entry_mode") == "801", "journal keeps the fallback entry mode")
    done = _advices(run, "0220")
    run.check(len(done) == 1 and "35" not in done[0], "0220 without track data")


def bank_view(run: Any) -> dict[str, Any]:
    """The acquirer's view for the scenario JSON: requests, advices and decisions (no PIN data)."""
    host = run.sim.acquirer
    return {"requests": [_masked(r) for r in host.requests], "advices": [_masked(a) for a in host.advices],
            "decisions": list(host.decisions), "settled_cents": host.settled_total}


def _masked(doc: dict[str, str]) -> dict[str, str]:
    """The host sees the card number; the scenario report shows it masked and track 2 only by its size."""
    out = dict(doc)
    if "2" in out:
        out["2"] = mask_pan(out["2"])
    if "35" in out:
        out["35"] = f"<track 2, {len(out['35'])} characters>"
    return out


BANK_SCENARIOS = {
    "bank-happy": bank_happy,
    "bank-partial": bank_partial,
    "bank-declined": bank_declined,
    "bank-wrong-pin": bank_wrong_pin,
    "bank-host-timeout": bank_host_timeout,
    "bank-card-removed": bank_card_removed,
    "bank-fallback-magstripe": bank_fallback_magstripe,
}
