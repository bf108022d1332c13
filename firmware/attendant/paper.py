"""What the attendant's actions print: a cash sale's receipt, the X and Z reports, a loyalty card's last
movements, a top-up or reward slip. Pure functions to receipt lines (contracts.receipt); the printer path
is the sale's (firmware.sale.world.Printer). No card number, PIN or code is ever printed in full."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.receipt import WIDTH, ReceiptLine
from firmware.attendant.report import ShiftReport, Totals
from firmware.programs.base import ReceiptHead
from firmware.receipt import format_litres, format_money

__all__ = ["cash_receipt", "movements_slip", "report_lines", "slip"]

RULE = ReceiptLine("-" * WIDTH)


def _pair(left: str, right: str) -> ReceiptLine:
    right = right[:max(0, WIDTH - len(left) - 1)]
    return ReceiptLine(left + " " * max(1, WIDTH - len(left) - len(right)) + right)


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _top(station_name: str, station: str, terminal: str, title: str, at: dt.datetime) -> list[ReceiptLine]:
    return [ReceiptLine(station_name[:WIDTH], bold=True, center=True),
            ReceiptLine(f"Station {station}"[:WIDTH], center=True), ReceiptLine(""),
            ReceiptLine(title[:WIDTH], bold=True, center=True), _pair("Date", _when(at)),
            _pair("Terminal", terminal)]


def cash_receipt(head: ReceiptHead, *, prepaid_cents: int | None, attendant: str) -> list[ReceiptLine]:
    """A cash prepay's receipt: the fuel, the total, the cash prepaid and the change the attendant gives
    back (an amount prepay), or the cash due (a litres prepay)."""
    price = f"{head.price_milli // 1000}.{head.price_milli % 1000:03d} {head.currency}/L"
    lines = [ReceiptLine(head.station_name[:WIDTH], bold=True, center=True),
             ReceiptLine(f"Station {head.station}"[:WIDTH], center=True), ReceiptLine("")]
    if head.copy:
        lines.append(ReceiptLine("*** DUPLICATE ***", bold=True, center=True))
    total = _pair("TOTAL", format_money(head.amount_cents, head.currency)).text
    lines += [_pair("Date", _when(head.when)), _pair("Terminal", head.terminal),
              _pair("Pump", str(head.pump)), _pair("Product", head.product),
              _pair("Volume", f"{format_litres(head.volume_cl)} L"), _pair("Unit price", price), RULE,
              ReceiptLine(total, bold=True), RULE]
    if prepaid_cents is not None:
        lines += [_pair("Cash prepaid", format_money(prepaid_cents, head.currency)),
                  _pair("Change", format_money(max(0, prepaid_cents - head.amount_cents), head.currency))]
    else:
        lines.append(_pair("Cash due", format_money(head.amount_cents, head.currency)))
    return lines + [_pair("Attendant", attendant), ReceiptLine("Sale"), ReceiptLine(head.sale_id[:WIDTH]),
                    ReceiptLine(""), ReceiptLine("Thank you", center=True)]


def _group(title: str, groups: Mapping[str, Totals], currency: str) -> list[ReceiptLine]:
    lines = [ReceiptLine(title, bold=True)]
    for name, t in groups.items():
        lines.append(_pair(f" {name}"[:20], f"{t.sales} {format_litres(t.volume_cl)} L"))
        lines.append(_pair("", format_money(t.charged_cents, currency)))
    return lines


def report_lines(report: ShiftReport, *, kind: str, station_name: str, station: str, terminal: str,
                 currency: str, at: dt.datetime, attendant: str) -> list[ReceiptLine]:
    """The X (running) or Z (closing) report of a shift, as printed."""
    t = report.total
    lines = _top(station_name, station, terminal, f"{kind} REPORT - SHIFT {report.shift.number}", at)
    numbers = (f"{report.shift.after_seq + 1}..{report.last_seq}" if report.last_seq > report.shift.after_seq
               else "none")
    lines += [_pair("Opened", _when(dt.datetime.fromtimestamp(report.shift.opened_at, dt.UTC))),
              _pair("Attendant", attendant), _pair("Sale numbers", numbers), RULE]
    lines += _group("Per product", report.by_product, currency)
    lines += _group("Per payment", report.by_payment, currency)
    lines += _group("Per attendant", report.by_attendant, currency)
    if report.topups:
        lines.append(ReceiptLine("Top-ups in cash", bold=True))
        lines += [_pair(f" {who}"[:20], f"{n} {format_money(c, currency)}") for who, (n, c) in
                  report.topups.items()]
    return lines + [RULE, _pair("Sales", str(t.sales)), _pair("Volume", f"{format_litres(t.volume_cl)} L"),
                    _pair("Amount", format_money(t.amount_cents, currency)),
                    ReceiptLine(_pair("TOTAL", format_money(t.charged_cents, currency)).text, bold=True),
                    _pair("Cash in drawer", format_money(report.cash_cents, currency)), RULE]


def movements_slip(result: Mapping[str, Any], *, station_name: str, station: str, terminal: str,
                   at: dt.datetime) -> list[ReceiptLine]:
    """A loyalty card's last movements (service answer loyalty_lookup): date, time, station, points."""
    lines = _top(station_name, station, terminal, "LOYALTY MOVEMENTS", at)
    # a pooled card's points are its pool's: no balance of its own is printed
    balance = "pooled" if result.get("pooled") else f"{result.get('balance', 0)} pts"
    lines += [_pair("Card", str(result.get("masked", ""))), _pair("Balance", balance), RULE]
    history: Sequence[Mapping[str, Any]] = result.get("history", ())
    for h in history:
        lines.append(_pair(f"{h['date']} {h['time'][:5]} {h['station']}"[:WIDTH - 9], f"{h['points']:+d}"))
    if not history:
        lines.append(ReceiptLine("No movements", center=True))
    return [*lines, RULE]


def slip(title: str, pairs: Sequence[tuple[str, str]], *, station_name: str, station: str, terminal: str,
         at: dt.datetime) -> list[ReceiptLine]:
    """A short slip (a top-up, a reward): a title and label/value pairs."""
    return [*_top(station_name, station, terminal, title, at), RULE, *(_pair(k, v) for k, v in pairs), RULE]
