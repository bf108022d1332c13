"""The attendant menu's actions (firmware.attendant.desk.ITEMS), each with what it logs in the shift journal.

A customer's card is asked for on the screen ATTENDANT_CARD; the registry's answers come through the
service client (contracts.service_messages), which audits top-ups and redemptions itself; the rest reach it
in the Z report. A refusal or a cancelled prompt ends the action on ATTENDANT_RESULT, back to the menu.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from contracts.pump import PumpState
from contracts.screens import Screen
from firmware.attendant.cash import CashOrder
from firmware.attendant.paper import report_lines, slip
from firmware.attendant.points import movements, points_menu, signed_in_online
from firmware.attendant.signin import Session
from firmware.programs.base import Question
from firmware.receipt import format_money
from firmware.sale.machine import SaleState
from firmware.sale.record import SaleRecord

if TYPE_CHECKING:
    from firmware.attendant.desk import Desk

__all__ = ["ACTIONS", "CASH_MOST_CENTS", "CASH_MOST_CL", "TOPUP_AMOUNT"]

CASH_MOST_CENTS = 500_00        # a cash prepay's most: the driver's preset is asked up to it
CASH_MOST_CL = 200_00
TOPUP_AMOUNT = Question("topup_amount", max_len=4)     # whole currency units, 1 to 9999


def _paper(desk: Desk) -> dict[str, str]:
    w = desk.runner.world
    return {"station_name": w.station().name, "station": w.station_id, "terminal": w.terminal}


def cash_prepay(desk: Desk, who: Session) -> None:
    if desk.cash is None:
        desk.tell("cash_prepay", ok=False, reason="not_allowed")
        return
    kind = ("amount", "volume")[desk.port.menu(Screen.ATTENDANT_MENU, ("prepay_amount", "prepay_litres"))]
    most = CASH_MOST_CENTS if kind == "amount" else CASH_MOST_CL
    sale_id = desk.runner.run(desk.cash.order(CashOrder(who.attendant, kind, most)))
    if sale_id is None:                        # no pump chosen: nothing journaled
        desk.tell("cash_prepay", ok=False, reason="cancelled")
        return
    rec = desk.runner.world.journal.get(sale_id)
    preset = {} if rec.preset is None else {"preset": rec.preset.kind, "value": rec.preset.value}
    desk.book.record(who.attendant, "cash_prepay", f"sale:{sale_id}", pump=rec.pump, state=rec.state.value,
                     **preset)
    if rec.state is SaleState.DECLINED:
        desk.tell("cash_prepay", ok=False, reason=getattr(rec.reason, "value", "cancelled"), pump=rec.pump)
    elif rec.totals_before is None:            # never released (the preset was cancelled): nothing to pay
        desk.tell("cash_prepay", ok=False, reason="cancelled", pump=rec.pump)
    else:                                      # released: the sale settles in the background
        desk.tell("cash_prepay", ok=True, pump=rec.pump)


def topup(desk: Desk, who: Session) -> None:
    if not signed_in_online(desk, who, "topup"):
        return
    card = desk.customer_card()
    units = int(desk.port.ask(TOPUP_AMOUNT) or 0)
    if units <= 0:
        desk.tell("topup", ok=False, reason="cancelled")
        return
    answer = desk.booking("topup", who, {"amount_cents": units * 100}, card)
    currency = desk.runner.world.station().currency
    if answer.ok:
        r = answer.result
        desk.book.record(who.attendant, "topup", f"card:{r['masked']}", paid_cents=r["paid_cents"],
                         bonus_cents=r["bonus_cents"])
        desk.print(slip("TOP-UP", [
            ("Card", r["masked"]), ("Paid in cash", format_money(r["paid_cents"], currency)),
            ("Bonus", format_money(r["bonus_cents"], currency)),
            ("Balance", format_money(r["balance_cents"], currency)), ("Attendant", who.attendant)],
            at=desk.now(), **_paper(desk)))
        desk.result("topup", answer, amount_cents=r["paid_cents"], currency=currency)
    else:
        desk.result("topup", answer)


def _busy(desk: Desk) -> set[int]:
    return desk.runner.pump.following() | {r.pump for r in desk.runner.world.journal.open_sales()}


def clear_pump(desk: Desk, who: Session) -> None:
    """A pump's error cleared by the controller's reset; never a pump released, followed or with a sale
    open (that sale is settled first, menu item 6)."""
    pumps = desk.runner.world.pump_numbers
    pump = desk.port.choose_pump(list(pumps))
    state = desk.pumps.status(pump).state
    if pump in _busy(desk) or state in (PumpState.AUTHORIZED, PumpState.FILLING):
        desk.tell("clear_pump", ok=False, reason="pump_busy", pump=pump)
        return
    desk.pumps.reset(pump)
    desk.book.record(who.attendant, "clear_pump", f"pump:{pump}", was=state.value)
    desk.tell("clear_pump", ok=True, pump=pump)


def settle_open(desk: Desk, who: Session) -> None:
    """A sale a pump outage left open (flagged for the attendant): the runner's recovery for that pump."""
    following = desk.runner.pump.following()
    open_ = [r for r in desk.runner.world.journal.open_sales() if r.pump not in following]
    if not open_:
        desk.tell("settle_open", ok=False, reason="nothing_open")
        return
    pumps = sorted({r.pump for r in open_})
    pump = pumps[0] if len(pumps) == 1 else desk.port.choose_pump(pumps)
    for rec in (r for r in open_ if r.pump == pump):
        desk.runner.recover_sale(rec, pump_wait=5.0)
        after = desk.runner.world.journal.get(rec.id)
        desk.book.record(who.attendant, "settle_open", f"sale:{rec.id}", state=after.state.value)
    journal = desk.runner.world.journal
    settled = all(journal.get(r.id).state is SaleState.COMPLETED for r in open_ if r.pump == pump)
    desk.tell("settle_open", ok=settled, pump=pump, **({} if settled else {"reason": "pump_error"}))


def _last_sale(desk: Desk, pump: int) -> SaleRecord | None:
    """The pump's last sale that dispensed, in this shift or the one before."""
    shift = desk.book.current()
    before = desk.book.z_report(shift.number - 1)
    after = int(before["after_seq"]) if before else shift.after_seq
    sales = [r for r in desk.runner.world.journal.completed_after(after) if r.pump == pump and r.volume_cl]
    return sales[-1] if sales else None


def reprint(desk: Desk, who: Session) -> None:
    pump = desk.port.choose_pump(list(desk.runner.world.pump_numbers))
    rec = _last_sale(desk, pump)
    if rec is None:
        desk.tell("reprint", ok=False, reason="nothing_open", pump=pump)
        return
    printed = desk.print(desk.runner.pump.receipt_lines(rec, copy=True))
    desk.book.record(who.attendant, "reprint", f"sale:{rec.id}", printed=printed)
    desk.tell("reprint", ok=printed, pump=pump, **({} if printed else {"reason": "failed"}))


def _report(desk: Desk, who: Session, kind: str) -> None:
    w = desk.runner.world
    currency = w.station().currency
    if kind == "X":
        desk.book.record(who.attendant, "x_report", f"shift:{desk.book.current().number}")
        report = desk.book.report()
    else:
        if desk.port.menu(Screen.ATTENDANT_MENU, ("close_shift", "back")) != 0:
            return
        desk.book.record(who.attendant, "z_report", f"shift:{desk.book.current().number}")
        report, _ = desk.book.close(who.attendant)
        desk.send_unsent()
    desk.print(report_lines(report, kind=kind, currency=currency, at=desk.now(),
                                          attendant=who.attendant, **_paper(desk)))
    desk.port.notice(Screen.ATTENDANT_REPORTS, desk.linger, kind=kind, shift=report.shift.number,
                     sales=report.total.sales, total_cents=report.total.charged_cents, currency=currency)


def x_report(desk: Desk, who: Session) -> None:
    _report(desk, who, "X")


def z_report(desk: Desk, who: Session) -> None:
    _report(desk, who, "Z")


ACTIONS: dict[str, Callable[[Desk, Session], None]] = {
    "cash_prepay": cash_prepay, "topup": topup, "redeem": points_menu, "movements": movements,
    "clear_pump": clear_pump, "settle_open": settle_open, "reprint": reprint, "x_report": x_report,
    "z_report": z_report,
}
