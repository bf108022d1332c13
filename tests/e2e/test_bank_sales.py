"""Bank sales under a SIGKILLed terminal and a vanished acquirer: money counted once, holds released once,
and no card data anywhere but the encrypted advice queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hostsim.acquirer_host import AcquirerHost
from hostsim.scenarios import Run
from hostsim.world import Simulator, card_index

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VISA = "visa_dda_online_pin"
VISA_PAN = "4761739001010010"
# A PIN no timestamp, UUID or counter will contain by chance.
WRONG_PIN = "731902468135"


def until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def approve(run: Run, pin: str = "1234") -> int:
    run.ready()
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin(pin)
    run.wait("lift_nozzle_amount", mark, timeout=30)
    return mark


def advices(sim: Simulator, mti: str) -> list[dict[str, str]]:
    return [a for a in sim.acquirer.advices if a["t"][:3] == mti[:3]]


def test_sigkill_while_filling_sends_one_completion(sim: Simulator, run: Run) -> None:
    approve(run)
    pump = sim.pump_line.pump(1)
    pump.flow_cl_per_s = 400.0
    pump.lift(1)
    pump.dispense(1800, wait=False)
    until(lambda: pump.total(1)[0] >= 400, 20, "fuel flowing")
    sim.kill_terminal()
    pump.dispense(0, timeout=30)
    pump.hang_up()
    run.remove()
    amount = (1800 * 1659 + 500) // 1000
    assert pump.amount_cents == amount

    mark = sim.panel.mark()
    sim.start_terminal()
    run.wait("thank_you", mark, timeout=30)
    until(lambda: advices(sim, "0220"), 20, "completion advice")
    time.sleep(1.0)
    [done] = advices(sim, "0220")
    assert done["4"] == f"{amount:012d}" and sim.acquirer.settled_total == amount == pump.amount_cents
    rec = run.wait_synced(run.last_sale_id())
    assert rec.recovered and rec.amount_cents == amount and rec.program == "bank"

    mark = sim.panel.mark()                  # a second restart sends and prints nothing more
    sim.kill_terminal()
    sim.start_terminal()
    run.wait("idle", mark, timeout=30)
    time.sleep(1.5)
    assert len(advices(sim, "0220")) == 1 and len(sim.printer.receipts) == 1


def test_sigkill_while_authorizing_reverses_once(sim: Simulator, run: Run) -> None:
    sim.acquirer_rules = lambda req: "timeout" if req["t"] == "0100" else "approve"
    run.ready()
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("authorizing", mark)
    until(lambda: sim.acquirer.requests, 10, "0100 at the acquirer")
    sim.kill_terminal()                      # the bank may have approved: nobody knows
    run.remove()
    mark = sim.panel.mark()
    sim.start_terminal()
    run.wait("idle", mark, timeout=30)
    until(lambda: advices(sim, "0420"), 20, "reversal")
    time.sleep(1.0)
    [rev] = advices(sim, "0420")
    assert rev["39"] == "68" and rev["90"][4:10] == sim.acquirer.requests[0]["11"]
    rec = run.wait_synced(run.last_sale_id(), timeout=1)
    assert rec.state == "declined" and rec.recovered and rec.reason == "host_timeout"
    assert not run.authorize_sent(1)


def test_completion_waits_for_the_acquirer_across_a_restart(sim: Simulator, run: Run) -> None:
    approve(run)
    port = sim.acquirer.port
    sim.acquirer.stop()                      # the acquirer goes away while the customer fills
    run.remove()
    run.fill(1, 1, 1000)
    mark = sim.panel.mark()
    run.wait("thank_you", mark, timeout=30)
    sim.kill_terminal()
    sim.start_terminal()
    time.sleep(2.0)
    old = sim.acquirer
    sim.acquirer = AcquirerHost(old.issuer_keys, old.pin_verifier, old.rules, port=port).start()
    sim.acquirer.approved.update(old.approved)      # the acquirer's records outlive its process
    until(lambda: advices(sim, "0220"), 30, "completion after the acquirer returned")
    time.sleep(1.0)
    [done] = advices(sim, "0220")
    amount = (1000 * 1659 + 500) // 1000
    assert done["4"] == f"{amount:012d}" and sim.acquirer.settled_total == amount


def test_no_pan_track_or_pin_anywhere_after_bank_sales(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin(WRONG_PIN)
    run.wait("declined", mark, timeout=30)
    run.remove()
    run.wait("idle", mark)
    approve(run)
    run.remove()
    run.fill(1, 1, 500)
    mark = sim.panel.mark()
    run.wait("thank_you", mark, timeout=30)
    until(lambda: advices(sim, "0220"), 20, "completion advice")
    sim.printer.wait_receipts(1, 10)

    files = [p for p in Path(sim.state).rglob("*") if p.is_file() and p.suffix not in (".toml", ".hex")]
    assert {"advices.db", "journal.db", "terminal.log"} <= {p.name for p in files}
    blobs = {str(p): p.read_bytes() for p in files}
    blobs["receipts"] = "\n".join(sim.printer.receipts).encode()
    blobs["screens"] = repr(sim.panel.screens).encode()
    for where, data in blobs.items():
        assert VISA_PAN.encode() not in data, f"full card number in {where}"
        assert VISA_PAN.encode().hex().encode() not in data.lower(), f"hex card number in {where}"
        assert b"4761739001010010D3112" not in data.upper(), f"track 2 in {where}"
        assert WRONG_PIN.encode() not in data, f"PIN in {where}"
    for rec in sim.journal().all_sales():
        assert rec.data and "pan" not in rec.data and VISA_PAN not in str(rec.data)


def test_mastercard_speaks_german_and_checks_the_pin_offline(sim: Simulator, run: Run) -> None:
    """5F2D 'deen' picks German screens; CDA card, offline enciphered PIN (VERIFY), then online for the
    pre-authorization; the next customer is greeted in the terminal's own language again."""
    run.ready()
    mark = run.insert(card_index("mc_cda_offline_pin"))
    pin_screen = run.wait("enter_pin", mark)
    assert pin_screen["lines"][0] == "PIN eingeben"
    run.pin("1234")
    screen = run.wait("lift_nozzle_amount", mark, timeout=30)
    assert screen["lines"][1] == "Zapfpistole abnehmen"
    run.remove()
    run.fill(1, 1, 700)
    run.wait("thank_you", mark, timeout=30)
    rec = run.wait_synced(run.last_sale_id())
    bank = rec.data
    assert bank["oda"] == "cda" and bank["cvm_results"] == "440302" and bank["language"] == "deen"
    assert "110" not in sim.acquirer.requests[-1]            # the PIN was verified by the card, not sent
    idle = run.wait("idle", mark, timeout=10)
    assert idle["lines"][0] == "Welcome"


def test_stripe_only_card_swiped_at_idle_and_chip_card_sent_to_the_chip(sim: Simulator, run: Run) -> None:
    run.ready()
    sim.swipe.wait_connected(10)
    chip_card = run.card(card_index(VISA)).track2
    mark = sim.panel.mark()
    sim.swipe.swipe(chip_card)                        # service code 201: the chip must be used
    run.wait("insert_chip", mark)
    run.wait("idle", mark, timeout=10)
    assert not sim.acquirer.requests
    mark = sim.panel.mark()
    sim.swipe.swipe(run.card(card_index("magstripe_only")).track2)    # service code 101
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle_amount", mark, timeout=30)
    [req] = sim.acquirer.requests
    assert req["22"] == "901" and "35" in req and "55" not in req
    run.fill(1, 1, 300)
    run.wait("thank_you", mark, timeout=30)
    until(lambda: advices(sim, "0220"), 20, "completion advice")
    rec = run.wait_synced(run.last_sale_id())
    assert rec.program == "bank" and rec.data["entry_mode"] == "901" and rec.volume_cl == 300


def test_sound_chip_without_a_payment_application_is_not_offered_the_stripe(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = run.insert(card_index("magstripe_only"))    # its chip answers, but 6A82 to every SELECT
    run.wait("card_not_accepted", mark)
    run.remove()
    run.wait("idle", mark)
    assert sim.panel.mark() > mark and "swipe_card" not in [s["screen"] for s in sim.panel.screens[mark:]]


def test_cardholder_confirms_the_application_then_sees_french(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = run.insert(card_index("visa_confirm_fr"))
    choice = run.wait("choose_app", mark)
    # no issuer code table 9F11: the label, not 9F12; on digit 1, as the screen built it from the typed list
    assert choice["view"]["options"] == [["1", "VISA PREMIER"]]
    sim.panel.press("1")
    pin = run.wait("enter_pin", mark)
    assert pin["lines"][0] == "Tapez votre code"                # 5F2D "fren": French from here on
    run.pin("1234")
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    assert sim.acquirer.decisions[-1]["code"] == "00"


def test_acquirer_down_declines_clearly_and_holds_nothing(sim: Simulator, run: Run) -> None:
    sim.acquirer.stop()
    run.ready()
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin("1234")
    screen = run.wait("declined", mark, timeout=30)
    assert screen["fields"]["reason"] == "host_unavailable" and "Bank unavailable" in screen["lines"]
    run.remove()
    run.wait("idle", mark)
    rec = sim.journal().get(run.last_sale_id())
    assert rec.state == "declined" and rec.amount_cents is None and not run.authorize_sent(1)
    time.sleep(1.0)
    assert sim.acquirer.requests == [] and sim.acquirer.advices == []    # no reversal for a 0100 never sent


def test_bank_cards_still_sell_while_the_registry_is_away(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = sim.panel.mark()
    sim.stop_broker()                                       # fleet cards need the registry, bank cards do not
    run.wait("idle_bank_only", mark, timeout=30)
    mark = run.insert(card_index(VISA))
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    run.fill(1, 1, 400)
    run.wait("thank_you", mark, timeout=30)
    until(lambda: advices(sim, "0220"), 20, "completion advice")
    sale_id = run.last_sale_id()
    assert not run.wait_synced(sale_id, timeout=1).synced    # the registry's copy waits for the broker
    sim.start_broker()
    assert run.wait_synced(sale_id, timeout=30).synced
