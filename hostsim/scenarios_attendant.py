"""Issue 15 scenarios of the attendant at the terminal: attendant-cash-prepay and attendant-z-report, and
the sign-in and menu steps loyalty-redeem uses too.

The operator sets the attendant up with `forecourt registry attendant add|card|pin` (card number and PIN
on standard input). The registry names attendants in each terminal's signed configuration and republishes
configurations when its attendants change (within `registry run --stop-list-poll`, 1 s in the simulator);
the scenario waits until the terminal runs a configuration naming them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select

from firmware.attendant.desk import ITEMS
from firmware.sale.machine import SaleState
from hostsim.scenarios_config import running_config
from hostsim.scenarios_fleet2 import registry_db
from hostsim.scenarios_loyalty_kit import chip, must, sale_amount
from registry.models import Attendant, AuditEntry, ShiftReport, Transaction

__all__ = ["ATTENDANT_NUMBERS", "ATTENDANT_SCENARIOS", "REDEEMER", "after", "attendants_ready", "menu",
           "sign_in", "sign_out"]

PREPAY_PIN = "2580"
# (id, name, card number): one attendant per scenario (Luhn-valid, IIN 707703)
CASHIER = ("A-15", "Sam Lee", "7077031000000016")
CLOSER = ("A-16", "Kim Park", "7077031000000024")
REDEEMER = ("A-17", "Alex Roe", "7077031000000032")
ATTENDANT_NUMBERS = tuple(pan for _, _, pan in (CASHIER, CLOSER, REDEEMER))


def _configured(sim: Any) -> set[str]:
    """The attendants' ids in the configuration the terminal runs."""
    doc = running_config(sim) or {}
    body = doc.get("body", doc)
    return {str(a.get("id")) for a in body.get("attendants", []) if isinstance(a, dict)}


def attendants_ready(run: Any) -> None:
    """The scenarios' attendants exist (made with the operator's commands when new) and the terminal runs
    a configuration that names them."""
    sim, wanted = run.sim, (CASHIER, CLOSER, REDEEMER)
    with registry_db(sim) as (s, _):
        known = set(s.scalars(select(Attendant.id)))
    for ident, name, pan in wanted:
        if ident in known:
            continue
        must(run, "attendant", "add", ident, "--name", name)
        must(run, "attendant", "card", ident, "--number", "-", stdin=pan + "\n", keys=True)
        must(run, "attendant", "pin", ident, stdin=PREPAY_PIN + "\n")
    ids = {ident for ident, _, _ in wanted}
    if ids <= _configured(sim):
        return
    deadline = time.monotonic() + 60
    while not ids <= _configured(sim):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the terminal's configuration never named {sorted(ids)}")
        time.sleep(0.2)
    run.log(f"the terminal runs a configuration naming {', '.join(sorted(ids))}")


def menu(run: Any, item: str, mark: int) -> int:
    """On the attendant's menu (shown since mark), the key of this item (1..9, 0 the tenth); the panel's
    mark once pressed (what the item shows comes after it)."""
    run.wait("attendant_menu", mark)
    key = str((ITEMS.index(item) + 1) % 10)
    run.log(f"attendant presses {key} ({item})")
    pressed: int = run.sim.panel.mark()
    run.sim.panel.press(key)
    return pressed


def after(run: Any, screen: dict[str, Any]) -> int:
    """The panel's index just after this screen."""
    return next(i for i, s in enumerate(run.sim.panel.screens) if s is screen) + 1


def sign_in(run: Any, who: tuple[str, str, str]) -> int:
    """The attendant inserts their card and keys the PIN; the panel's mark before, once the menu shows."""
    ident, name, pan = who
    run.ready()
    mark = chip(run, pan, f"ATTENDANT {name.upper()}")
    run.wait("enter_pin", mark)
    run.log("attendant enters PIN " + "*" * len(PREPAY_PIN))
    run.sim.panel.press(*PREPAY_PIN, "ENTER")
    screen = run.wait(("attendant_menu", "attendant_result"), mark, timeout=30)
    run.check(screen["screen"] == "attendant_menu", f"{ident} signed in, got {screen['fields']}")
    return mark


def sign_out(run: Any, mark: int) -> None:
    """0 on the menu, then the attendant's card out and the terminal idle again."""
    since = menu(run, "sign_out", mark)
    run.wait("attendant_result", since)
    run.remove()
    run.wait(("idle", "idle_bank_only"), since, timeout=30)


def cash_prepay(run: Any, mark: int, *, litres: bool, digits: str, volume_cl: int) -> Any:
    """Menu 1 (cash prepay), by amount or litres, the preset keyed, the customer fills: the sale once the
    registry acknowledged it."""
    since = menu(run, "cash_prepay", mark)
    run.wait("attendant_menu", since)
    run.log(f"attendant picks prepay by {'litres' if litres else 'amount'}")
    run.sim.panel.press("2" if litres else "1")
    run.wait("enter_preset", since, timeout=30)
    run.log(f"attendant keys {digits}")
    run.sim.panel.press(*digits, "ENTER")
    lift = run.wait(("lift_nozzle", "lift_nozzle_amount"), since, timeout=30)
    sale_id = run.last_sale_id()            # journaled as the pump was released
    run.sale_ids.append(sale_id)
    # the menu is back at once: the customer's sale settles in the background (no thank-you screen)
    run.wait("attendant_menu", after(run, lift), timeout=30)
    run.fill(1, 1, volume_cl)
    return run.wait_synced(sale_id, timeout=30)


def attendant_cash_prepay(run: Any) -> None:
    """Sam signs in with card and PIN, prepays 20.00 in cash on pump 1, the customer takes 5 L of diesel:
    the sale is settled for what flowed, the receipt shows the cash and the change, the registry holds the
    cash sale, and the shift journal has the action with Sam's id."""
    attendants_ready(run)
    printed = len(run.sim.printer.receipts)
    mark = sign_in(run, CASHIER)
    rec = cash_prepay(run, mark, litres=False, digits="20", volume_cl=500)
    cents = sale_amount(500)
    run.check(rec.program == "cash" and rec.data.get("attendant") == CASHIER[0],
              f"a cash sale authorized by {CASHIER[0]}: {rec.program} {rec.data.get('attendant')}")
    run.check(rec.state is SaleState.COMPLETED and rec.volume_cl == 500 and rec.charged_cents == cents,
              f"5.00 L charged {cents} cents ({rec.volume_cl}, {rec.charged_cents})")
    run.check(rec.preset is not None and (rec.preset.kind, rec.preset.value) == ("amount", 2000),
              f"the pump was preset to the 20.00 paid: {rec.preset}")
    run.check(rec.synced, "the registry acknowledged the cash sale")
    reg = run.sim.registry_sale(rec.id)
    run.check(reg is not None and reg["kind"] == "cash" and reg["amount_cents"] == cents
              and reg["card_id"] is None, f"the registry holds it as a cash sale: {reg}")
    sign_out(run, mark)
    paper = run.sim.printer.wait_receipts(printed + 1, 10)[printed]
    change = f"{(2000 - cents) / 100:.2f}"
    run.check("Cash prepaid" in paper and "20.00" in paper and change in paper,
              f"the receipt shows 20.00 cash prepaid and {change} change")
    run.check(CASHIER[2] not in paper and PREPAY_PIN not in paper, "no attendant card number on paper")


def _journal_shift(run: Any, after_seq: int, last_seq: int) -> dict[str, Any]:
    """The journal's completed sales numbered in (after_seq, last_seq]: counted apart from the report."""
    journal = run.sim.journal()
    try:
        sales = [r for r in journal.all_sales() if r.state is SaleState.COMPLETED and r.seq is not None
                 and after_seq < r.seq <= last_seq]
    finally:
        journal.close()
    by_payment: dict[str, int] = {}
    for r in sales:
        by_payment[r.program] = by_payment.get(r.program, 0) + (r.charged_cents or 0)
    return {"ids": [r.id for r in sales], "volume_cl": sum(r.volume_cl or 0 for r in sales),
            "charged_cents": sum(r.charged_cents or 0 for r in sales),
            "amount_cents": sum(r.amount_cents or 0 for r in sales),
            "sales": sum(1 for r in sales if (r.volume_cl or 0) > 0), "by_payment": by_payment}


def attendant_z_report(run: Any) -> None:
    """Kim prepays 15 L in cash, takes an X report then a Z report: the Z's totals equal the journal's
    completed sales of the shift (every sale since the previous Z, self-service ones too), per payment
    type as well; the registry stores the report once and audits the actions with Kim's id; a new shift
    starts with nothing in it."""
    attendants_ready(run)
    mark = sign_in(run, CLOSER)
    rec = cash_prepay(run, mark, litres=True, digits="15", volume_cl=1500)
    run.check(rec.volume_cl == 1500 and rec.charged_cents == sale_amount(1500), "15.00 L sold for cash")
    for item in ("x_report", "z_report"):
        since = menu(run, item, mark)
        if item == "z_report":
            run.wait("attendant_menu", since)
            run.log("attendant confirms the Z report (1)")
            run.sim.panel.press("1")
        shown = run.wait("attendant_reports", since, timeout=30)
        run.log(f"{item}: {shown['fields']}")
        mark = after(run, shown)
    z = shown["fields"]
    since = menu(run, "x_report", mark)
    fresh = run.wait("attendant_reports", since, timeout=30)["fields"]
    sign_out(run, since)
    with registry_db(run.sim) as (s, _):
        row = s.scalar(select(ShiftReport).where(ShiftReport.terminal == run.sim.device["id"])
                       .order_by(ShiftReport.shift.desc()))
        totals = None if row is None else json.loads(row.totals)
        audited = list(s.scalars(select(AuditEntry.action)
                                 .where(AuditEntry.actor == f"attendant:{CLOSER[0]}")))
    run.check(row is not None and totals is not None, "the registry stored the Z report")
    if row is None or totals is None:
        return
    counted = _journal_shift(run, int(totals["after_seq"]), int(totals["last_seq"]))
    run.log(f"journal, shift {row.shift}: {counted}")
    run.check(rec.id in counted["ids"], "the cash sale is in the shift")
    total = totals["total"]
    run.check((total["sales"], total["volume_cl"], total["amount_cents"], total["charged_cents"])
              == (counted["sales"], counted["volume_cl"], counted["amount_cents"], counted["charged_cents"]),
              f"Z totals {total} = the journal's sales of the shift {counted}")
    paid = {k: v["charged_cents"] for k, v in totals["by_payment"].items()}
    run.check(paid == counted["by_payment"], f"per payment type {paid} = {counted['by_payment']}")
    run.check(str(z.get("total_cents")) == str(total["charged_cents"]) and str(z.get("kind")) == "Z",
              f"the attendant saw the Z total: {z}")
    with registry_db(run.sim) as (s, _):
        synced = s.scalars(select(Transaction).where(Transaction.sale_id.in_(counted["ids"]))).all()
    run.check(sum(t.volume_cl for t in synced) == counted["volume_cl"] and len(synced) == len(counted["ids"]),
              "the registry holds the same sales")
    run.check(row.attendant_id == CLOSER[0] and "attendant.z_report" in audited
              and "attendant.cash_prepay" in audited, f"actions audited with {CLOSER[0]}: {audited}")
    printed = "\n".join(run.sim.printer.receipts)
    run.check(f"Z REPORT - SHIFT {row.shift}" in printed, "the Z report was printed")
    run.check(str(fresh.get("sales")) == "0" and str(fresh.get("kind")) == "X",
              f"the next shift starts empty: {fresh}")


ATTENDANT_SCENARIOS = {"attendant-cash-prepay": attendant_cash_prepay,
                       "attendant-z-report": attendant_z_report}
