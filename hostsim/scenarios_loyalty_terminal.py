"""Issue 15 scenarios of the terminal's loyalty adjunct, its voucher program and the attendant's redemption:
voucher-twice, loyalty-earn-promo, loyalty-with-bank-card and loyalty-redeem.

A loyalty card is shown first (the "card read" screen), taken out, then any payment card pays; the
registry books the points when the sale arrives (earn:{sale_id}) and the receipt prints them. A paper
voucher's code is read off the sheet the registry printed (its QR code, decoded with zxing-cpp as the
driver's eyes) and typed after ENTER on the idle screen.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hostsim.scenarios_attendant import REDEEMER, after, attendants_ready, menu, sign_in, sign_out
from hostsim.scenarios_fleet2 import registry_db, settle
from hostsim.scenarios_loyalty_cards import PIN, fuel_sale, issue
from hostsim.scenarios_loyalty_kit import (
    chip,
    ledger,
    loyalty_account,
    must,
    number_in,
    programme,
    sale_amount,
    wallets_of,
)
from hostsim.world import card_index
from registry.models import (
    LoyaltyMember,
    Movement,
    PointAllocation,
    PointAward,
    RewardOrder,
    RewardStock,
    Transaction,
    Voucher,
)

__all__ = ["TERMINAL_NUMBERS", "TERMINAL_SCENARIOS"]

PROMO_LOYALTY, PROMO_PAYER = "7077011000000018", "7077021000000058"
BANK_LOYALTY = "7077011000000026"
REDEEM_LOYALTY, REDEEM_PAYER = "7077011000000042", "7077021000000066"
TERMINAL_NUMBERS = (PROMO_LOYALTY, PROMO_PAYER, BANK_LOYALTY, REDEEM_LOYALTY, REDEEM_PAYER)
PETROL_MILLI = 1789                  # seed.toml: petrol 95 on pump 1 nozzle 2


def show_loyalty(run: Any, pan: str, holder: str) -> dict[str, Any]:
    """The driver shows the loyalty card first: the "card read" screen, then the card comes out."""
    mark = chip(run, pan, holder)
    screen: dict[str, Any] = run.wait(("card_read", "card_not_accepted", "card_error"), mark, timeout=30)
    run.check(screen["screen"] == "card_read", f"loyalty card ...{pan[-4:]} read, got {screen['screen']}")
    run.remove()
    run.wait(("idle", "idle_bank_only"), mark, timeout=30)
    return screen


def _earned(sim: Any, sale_id: str) -> tuple[int | None, int | None]:
    """The earn movement of a sale (points) and its award's points."""
    with registry_db(sim) as (s, _):
        move = s.scalar(select(Movement).where(Movement.key == f"earn:{sale_id}"))
        if move is None:
            return None, None
        award = s.get(PointAward, move.id)
        return move.amount, None if award is None else award.points


def _points_lines(paper: str) -> tuple[str, int, int] | None:
    """The receipt's loyalty lines: (masked card, points earned, balance); None when it has none."""
    found = re.search(r"Loyalty card +(\S+)\s+Points earned +(\d+)\s+Points balance +(\d+)", paper)
    return None if found is None else (found.group(1), int(found.group(2)), int(found.group(3)))


def _points_wallet(sim: Any, account: int) -> int:
    return wallets_of(sim, account)["points"]


def voucher_twice(run: Any) -> None:
    """A 20 L diesel voucher printed by the registry: its code typed at the pump releases 20 L of diesel,
    charged nothing; the same code typed again is refused as used, and the registry holds it redeemed
    once, by that sale."""
    run.ready()
    out = run.sim.state / "vouchers-twice"
    must(run, "voucher", "issue", "--product", "diesel", "--litres", "20", "--count", "1", "--expires",
         "none", "--batch", "scenario", "--out", str(out), keys=True)
    [sheet] = sorted(Path(out).glob("voucher-*.png"))
    code = _read_qr(sheet)
    run.log(f"driver reads the voucher's code off {sheet.name} (last digits {code[-4:]})")
    printed = len(run.sim.printer.receipts)
    first, mark = _type_code(run, code)
    run.check(first["screen"] in ("lift_nozzle", "lift_nozzle_amount"),
              f"the voucher released the pump: {first['screen']} {first['fields']}")
    run.fill(1, 1, 2000)
    run.wait(("thank_you", "no_fuel"), mark, timeout=30)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    rec = run.wait_synced(sale_id, timeout=30)
    run.check(rec.program == "voucher" and rec.volume_cl == 2000 and rec.charged_cents == 0,
              f"20 L of diesel charged nothing: {rec.program} {rec.volume_cl} {rec.charged_cents}")
    run.wait(("idle", "idle_bank_only"), mark, timeout=30)
    paper = run.sim.printer.wait_receipts(printed + 1, 10)[printed]
    run.check(code not in paper and code[-4:] in paper,
              "the receipt names the voucher by its last digits only")
    second, mark = _type_code(run, code)
    shown = " | ".join(second.get("lines", [])) + str(second.get("fields", {}))
    run.check(second["screen"] == "voucher_refused" and "used" in shown.lower(),
              f"the second use is refused as used: {second['screen']} {shown}")
    run.wait(("idle", "idle_bank_only"), mark, timeout=30)
    with registry_db(run.sim) as (s, _):
        rows = s.scalars(select(Voucher).where(Voucher.batch == "scenario")).all()
        state = [(v.status, v.terminal, v.auth_id) for v in rows]
    run.check(len(rows) == 1 and rows[0].status == "redeemed" and rows[0].terminal == run.sim.device["id"],
              f"redeemed once in the registry, by this terminal: {state}")
    reg = run.sim.registry_sale(sale_id)
    run.check(reg is not None and reg["kind"] == "voucher" and reg["volume_cl"] == 2000,
              f"the registry holds the voucher sale: {reg}")


def _read_qr(sheet: Path) -> str:
    try:
        import zxingcpp  # type: ignore[import-not-found,unused-ignore]
        from PIL import Image
    except ImportError as exc:          # a test dependency (pyproject's dev extra)
        raise RuntimeError("voucher-twice reads the sheet's QR code: pip install zxing-cpp") from exc
    with Image.open(sheet) as image:
        texts = [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]
    if len(texts) != 1 or not texts[0].isdigit():
        raise RuntimeError(f"the sheet {sheet.name} holds no one voucher code")
    return str(texts[0])


def _type_code(run: Any, code: str) -> tuple[dict[str, Any], int]:
    """ENTER on the idle screen, the code, ENTER: the screen that follows (released, or refused) and the
    panel's mark before."""
    run.ready()
    mark = run.sim.panel.mark()
    run.log("driver presses ENTER on the idle screen (paper voucher)")
    run.sim.panel.press("ENTER")
    run.wait("enter_voucher", mark)
    run.log("driver types the voucher's code (" + "*" * len(code) + ") and ENTER")
    run.sim.panel.press(*code, "ENTER")
    screen: dict[str, Any] = run.wait(("lift_nozzle", "lift_nozzle_amount", "voucher_refused", "declined",
                                       "host_unavailable"), mark, timeout=30)
    return screen, mark


def loyalty_earn_promo(run: Any) -> None:
    """Double points on premium (petrol 95) this month, and the card's first sale within 30 days of issue
    triples them: 10 L x 1 point x 2 x 3 = 60 points, on the receipt and booked once by the registry."""
    run.ready()
    programme(run)
    today = dt.datetime.now(dt.UTC).date()
    first, last = today.replace(day=1), (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    must(run, "loyalty", "promo", "add", "--name", "premium double", "--position", "10", "--product",
         "petrol95", "--from", first.isoformat(), "--to", (last - dt.timedelta(days=1)).isoformat(),
         "--multiplier", "200")
    account, _ = loyalty_account(run, "Promo Driver", PROMO_LOYALTY, issued_on=today)
    issue(run, "gift", PROMO_PAYER, "any", amount="50", key="PROMO-TILL1-0001")
    show_loyalty(run, PROMO_LOYALTY, "LOYALTY PROMO")
    rec, printed = _petrol_sale(run, PROMO_PAYER, "GIFT CARD (PAYS)")
    run.check(rec.synced and rec.product == "petrol95" and rec.volume_cl == 1000, "10 L of petrol 95 sold")
    moved, awarded = _earned(run.sim, rec.id)
    run.check(moved == 60 and awarded == 60, f"the registry booked 60 points once: {moved} {awarded}")
    paper = run.sim.printer.receipts[printed]
    run.check(_points_lines(paper) == ("707701******0018", 60, 60) and PROMO_LOYALTY not in paper,
              f"the receipt: masked loyalty card, 60 points earned, balance 60: {_points_lines(paper)}")
    with registry_db(run.sim) as (s, _):
        member = s.get(LoyaltyMember, account)
        used = None if member is None else member.first_used_at
    run.check(used is not None, "the card's first use is recorded: no second first-use bonus")
    led = ledger(run.sim, _points_wallet(run.sim, account))
    run.check(led["balance"] == led["sum"] == 60, f"balance = sum of the points movements: {led}")


def _petrol_sale(run: Any, pan: str, holder: str) -> tuple[Any, int]:
    """10 L of petrol 95 (product 2, nozzle 2) with this chip card: the synced record and the receipts
    printed before."""
    printed = len(run.sim.printer.receipts)
    mark = chip(run, pan, holder)
    run.wait("enter_pin", mark)
    run.pin(PIN)
    asked = run.wait("choose_product", mark, timeout=30)
    run.log("driver picks product 2 (Unleaded 95)")
    run.sim.panel.press("2")
    screen = run.wait(("lift_nozzle", "declined"), after(run, asked), timeout=30)
    run.check(screen["screen"] == "lift_nozzle", f"approved, got {screen['fields']}")
    run.fill(1, 2, 1000)
    rec = settle(run, mark)
    run.remove()
    run.wait("idle", mark)
    run.sim.printer.wait_receipts(printed + 1, 10)
    return rec, printed


def loyalty_with_bank_card(run: Any) -> None:
    """The loyalty card, then a Visa card pays 20 L of diesel in the same sale: the receipt shows the points
    and the new balance; the registry books them on the bank sale once."""
    run.ready()
    programme(run)
    issued = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=90)       # no first-use bonus
    account, wallet = loyalty_account(run, "Bank Card Driver", BANK_LOYALTY, issued_on=issued)
    show_loyalty(run, BANK_LOYALTY, "LOYALTY BANK")
    printed = len(run.sim.printer.receipts)
    mark = run.insert(card_index("visa_dda_online_pin"))
    run.wait("enter_pin", mark)
    run.pin(PIN)
    run.wait("lift_nozzle_amount", mark, timeout=30)
    run.remove()
    run.fill(1, 1, 2000)
    run.wait(("thank_you", "no_fuel"), mark, timeout=30)
    sale_id = run.last_sale_id()
    run.sale_ids.append(sale_id)
    rec = run.wait_synced(sale_id, timeout=30)
    run.check(rec.program == "bank" and rec.amount_cents == sale_amount(2000), "a bank sale of 20 L")
    paper = run.sim.printer.wait_receipts(printed + 1, 10)[printed]
    run.check(_points_lines(paper) == ("707701******0026", 20, 20) and BANK_LOYALTY not in paper,
              f"the bank receipt shows the loyalty card, 20 points, balance 20: {_points_lines(paper)}")
    moved, _ = _earned(run.sim, sale_id)
    run.check(moved == 20, f"20 points booked on the bank sale: {moved}")
    led = ledger(run.sim, wallet)
    run.check(led["balance"] == led["sum"] == 20, f"balance = sum of the points movements: {led}")
    with registry_db(run.sim) as (s, _):
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
    run.check(tx is not None and tx.kind == "bank" and tx.account_id is None,
              f"loyalty account {account} earned; no fleet account charged")


def loyalty_redeem(run: Any) -> None:
    """30 points earned (10 L, first-use bonus), a reward of 25 points with 2 in stock here: the attendant
    signs in, presents the customer's card, picks the reward, hands it over: 5 points left, 1 in stock,
    the redeem movement allocated to the award, a slip printed."""
    attendants_ready(run)
    programme(run)
    reward = number_in(must(run, "reward", "add", "--name", "Car wash token", "--points", "25"),
                       r"reward (\d+)")
    must(run, "reward", "stock", "--reward", str(reward), "--station", run.sim.device["station"],
         "--set", "2")
    _, wallet = loyalty_account(run, "Redeem Driver", REDEEM_LOYALTY,
                                issued_on=dt.datetime.now(dt.UTC).date())
    issue(run, "gift", REDEEM_PAYER, "any", amount="50", key="REDEEM-TILL1-0001")
    show_loyalty(run, REDEEM_LOYALTY, "LOYALTY REDEEM")
    fuel_sale(run, REDEEM_PAYER, "GIFT CARD (PAYS)")
    run.check(ledger(run.sim, wallet)["balance"] == 30, "30 points before the redemption")
    printed = len(run.sim.printer.receipts)
    mark = sign_in(run, REDEEMER)
    since = menu(run, "redeem", mark)
    run.wait("attendant_menu", since)             # the points sub-menu: 1 reward, 2 points to credit
    run.log("attendant presses 1 (reward)")
    since = run.sim.panel.mark()
    run.sim.panel.press("1")
    run.wait("attendant_card", since)
    run.remove()
    chip(run, REDEEM_LOYALTY, "LOYALTY REDEEM")
    chosen = run.wait(("choose_app", "attendant_result"), since, timeout=30)
    offered = " | ".join(chosen.get("lines", []))
    run.check(chosen["screen"] == "choose_app" and "Car wash token 25" in offered,
              f"the reward the card can pay for is offered: {offered}")
    run.log("attendant picks reward 1")
    run.sim.panel.press("1")
    run.wait("attendant_menu", after(run, chosen), timeout=30)
    run.log("attendant hands the reward over (1)")
    run.sim.panel.press("1")
    result = run.wait("attendant_result", since, timeout=30)
    run.check(str(result["fields"].get("ok")).lower() in ("true", "1"), f"redeemed: {result['fields']}")
    sign_out(run, after(run, result))
    with registry_db(run.sim) as (s, _):
        stock = s.scalar(select(RewardStock.quantity).where(RewardStock.reward_id == reward))
        orders = s.scalars(select(RewardOrder).where(RewardOrder.reward_id == reward)).all()
        spend = s.scalar(select(Movement).where(Movement.wallet_id == wallet, Movement.kind == "redeem"))
        taken = [] if spend is None else s.execute(select(PointAllocation.points)
                                                   .where(PointAllocation.spend_id == spend.id)).all()
    run.check(stock == 1, f"the station's stock went down to 1: {stock}")
    run.check(len(orders) == 1 and orders[0].status == "handed_over", f"one order handed over: {orders}")
    run.check(spend is not None and spend.amount == -25 and [p for (p,) in taken] == [25],
              "the redeem movement (-25) is allocated to the earned award")
    led = ledger(run.sim, wallet)
    run.check(led["balance"] == led["sum"] == 5, f"5 points left = sum of the movements: {led}")
    slip = "\n".join(run.sim.printer.receipts[printed:])
    run.check("Car wash token" in slip and REDEEM_LOYALTY not in slip and REDEEMER[0] in slip,
              "the slip names the reward and the attendant, not the card number")


TERMINAL_SCENARIOS = {"voucher-twice": voucher_twice, "loyalty-earn-promo": loyalty_earn_promo,
                      "loyalty-with-bank-card": loyalty_with_bank_card, "loyalty-redeem": loyalty_redeem}
