"""The purse's lines on a receipt: the card, the wallet, what the card debited and its new balance, in
the receipt's language (ui/locales, receipt.purse_*)."""

from __future__ import annotations

from contracts.receipt import WIDTH, ReceiptLine
from firmware.programs.base import ReceiptHead
from firmware.receipt import format_litres, format_money, framed
from firmware.sale.record import SaleRecord
from ui.catalog import text

__all__ = ["purse_lines"]


def _pair(left: str, right: str) -> ReceiptLine:
    gap = max(1, WIDTH - len(left) - len(right))
    return ReceiptLine((left + " " * gap + right)[:WIDTH])


def _figure(value: int, unit: str, currency: str) -> str:
    return format_money(value, currency) if unit == "MONEY" else f"{format_litres(value)} L"


def purse_lines(sale: SaleRecord, head: ReceiptHead, language: str = "en") -> list[ReceiptLine]:
    """The whole receipt of a purse sale."""
    return framed(head.fields(), _lines(sale, head, language))


def _lines(sale: SaleRecord, head: ReceiptHead, language: str) -> list[ReceiptLine]:
    doc = sale.data.get("purse")
    lines = [_pair(text(language, "receipt.purse_card"), head.card_masked)]
    if not isinstance(doc, dict):
        return lines
    unit = str(doc.get("unit", "VOLUME"))
    lines.append(_pair(text(language, "receipt.purse_wallet"), str(int(doc.get("wallet", 0)) + 1)))
    if "record" not in doc:
        return [*lines, ReceiptLine(text(language, "receipt.purse_next_insertion")[:WIDTH])]
    for key, field in (("receipt.purse_debited", "debited"), ("receipt.purse_balance", "balance")):
        lines.append(_pair(text(language, key), _figure(int(doc[field]), unit, head.currency)))
    return lines
