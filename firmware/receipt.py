"""Receipt content: a pure function from a completed sale to styled lines (no device I/O here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["WIDTH", "ReceiptLine", "fleet_receipt", "format_litres", "format_money"]

WIDTH = 42  # characters per line on an 80 mm printer in font A


@dataclass(frozen=True)
class ReceiptLine:
    text: str
    bold: bool = False
    center: bool = False


def format_money(cents: int, currency: str = "EUR") -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d} {currency}"


def format_litres(cl: int) -> str:
    return f"{cl // 100}.{cl % 100:02d}"


def _pair(left: str, right: str) -> ReceiptLine:
    right = right[:WIDTH - len(left) - 1]
    gap = max(1, WIDTH - len(left) - len(right))
    return ReceiptLine(left + " " * gap + right)


def fleet_receipt(*, station_name: str, station: str, terminal: str, sale_id: str, when: dt.datetime,
                  pump: int, product: str, volume_cl: int, price_milli: int, amount_cents: int,
                  card_masked: str, auth_id: str, currency: str = "EUR", copy: bool = False) -> list[ReceiptLine]:
    price = f"{price_milli // 1000}.{price_milli % 1000:03d} {currency}/L"
    lines = [
        ReceiptLine(station_name[:WIDTH], bold=True, center=True),
        ReceiptLine(f"Station {station}", center=True),
        ReceiptLine(""),
    ]
    if copy:
        lines.append(ReceiptLine("*** DUPLICATE ***", bold=True, center=True))
    lines += [
        _pair("Date", when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        _pair("Terminal", terminal),
        _pair("Pump", str(pump)),
        _pair("Product", product),
        _pair("Volume", f"{format_litres(volume_cl)} L"),
        _pair("Unit price", price),
        ReceiptLine("-" * WIDTH),
        ReceiptLine(_pair("TOTAL", format_money(amount_cents, currency)).text, bold=True),
        ReceiptLine("-" * WIDTH),
        _pair("Fleet card", card_masked),
        _pair("Auth", auth_id[:8].upper()),
        ReceiptLine("Sale"),
        ReceiptLine(sale_id),
        ReceiptLine(""),
        ReceiptLine("Thank you", center=True),
    ]
    return lines
