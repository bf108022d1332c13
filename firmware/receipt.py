"""Receipt content: a pure function from a completed sale to styled lines (no device I/O here)."""

from __future__ import annotations

import datetime as dt

from contracts.receipt import WIDTH, ReceiptLine

__all__ = ["bank_receipt", "fleet_receipt", "format_litres", "format_money", "framed",
           "mask_pan"]

def format_money(cents: int, currency: str = "EUR") -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d} {currency}"


def format_litres(cl: int) -> str:
    return f"{cl // 100}.{cl % 100:02d}"


def _pair(left: str, right: str) -> ReceiptLine:
    right = right[:WIDTH - len(left) - 1]
    gap = max(1, WIDTH - len(left) - len(right))
    return ReceiptLine(left + " " * gap + right)


def _sale_head(*, station_name: str, station: str, terminal: str, when: dt.datetime, pump: int, product: str,
               volume_cl: int, price_milli: int, amount_cents: int, currency: str,
               copy: bool) -> list[ReceiptLine]:
    """Station header, the fuel lines and the TOTAL between rules: common to every receipt."""
    price = f"{price_milli // 1000}.{price_milli % 1000:03d} {currency}/L"
    lines = [
        ReceiptLine(station_name[:WIDTH], bold=True, center=True),
        ReceiptLine(f"Station {station}"[:WIDTH], center=True),
        ReceiptLine(""),
    ]
    if copy:
        lines.append(ReceiptLine("*** DUPLICATE ***", bold=True, center=True))
    return lines + [
        _pair("Date", when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        _pair("Terminal", terminal),
        _pair("Pump", str(pump)),
        _pair("Product", product),
        _pair("Volume", f"{format_litres(volume_cl)} L"),
        _pair("Unit price", price),
        ReceiptLine("-" * WIDTH),
        ReceiptLine(_pair("TOTAL", format_money(amount_cents, currency)).text, bold=True),
        ReceiptLine("-" * WIDTH),
    ]


def _sale_tail(sale_id: str) -> list[ReceiptLine]:
    return [ReceiptLine("Sale"), ReceiptLine(sale_id[:WIDTH]), ReceiptLine(""),
            ReceiptLine("Thank you", center=True)]


def fleet_receipt(*, station_name: str, station: str, terminal: str, sale_id: str, when: dt.datetime,
                  pump: int, product: str, volume_cl: int, price_milli: int, amount_cents: int,
                  card_masked: str, auth_id: str, currency: str = "EUR",
                  copy: bool = False) -> list[ReceiptLine]:
    head = _sale_head(station_name=station_name, station=station, terminal=terminal, when=when, pump=pump,
                      product=product, volume_cl=volume_cl, price_milli=price_milli,
                      amount_cents=amount_cents, currency=currency, copy=copy)
    return head + [
        _pair("Fleet card", card_masked),
        _pair("Auth", auth_id[:8].upper()),
    ] + _sale_tail(sale_id)


def framed(head: dict[str, object], lines: list[ReceiptLine]) -> list[ReceiptLine]:
    """A program's own lines between the common head and tail (head: firmware.programs.base.ReceiptHead's
    fields)."""
    fields = {k: v for k, v in head.items() if k not in ("sale_id", "card_masked")}
    return _sale_head(**fields) + lines + _sale_tail(str(head["sale_id"]))  # type: ignore[arg-type]


def mask_pan(value: str) -> str:
    """A PAN as it may be printed: with more than 10 digits, only the first 6 and last 4 stay visible."""
    count = sum(ch.isdigit() for ch in value)
    if count <= 10:
        return value
    out: list[str] = []
    seen = 0
    for ch in value:
        if ch.isdigit():
            out.append(ch if seen < 6 or seen >= count - 4 else "*")
            seen += 1
        else:
            out.append(ch)
    return "".join(out)


def _printable(text: str) -> str:
    """Card data (labels) stripped to printable ASCII: no control bytes reach the ESC/POS printer."""
    return "".join(ch for ch in text if " " <= ch <= "~").strip()


def bank_receipt(*, station_name: str, station: str, terminal: str, sale_id: str, when: dt.datetime,
                 pump: int, product: str, volume_cl: int, price_milli: int, amount_cents: int,
                 preauth_cents: int, card_masked: str, app_label: str, aid_hex: str, entry_mode: str,
                 cvm: str, auth_code: str, tvr_hex: str, tsi_hex: str, currency: str = "EUR",
                 copy: bool = False, partial: bool = False) -> list[ReceiptLine]:
    """Cardholder receipt of a bank card (EMV or magstripe) sale: fuel, totals, then the card block."""
    head = _sale_head(station_name=station_name, station=station, terminal=terminal, when=when, pump=pump,
                      product=product, volume_cl=volume_cl, price_milli=price_milli,
                      amount_cents=amount_cents, currency=currency, copy=copy)
    preauth = "Pre-authorized (partial)" if partial else "Pre-authorized"
    rows = [
        ("Card", _printable(mask_pan(card_masked))),
        ("Application", _printable(app_label)),
        ("AID", _printable(aid_hex).upper()),
        ("Entry", _printable(entry_mode)),
        ("Verification", _printable(cvm)),
        ("Auth code", _printable(auth_code)),
        (preauth, format_money(preauth_cents, currency)),
        ("Charged", format_money(amount_cents, currency)),
        ("TVR", _printable(tvr_hex).upper()),
        ("TSI", _printable(tsi_hex).upper()),
    ]
    # a swiped card has no application, AID, TVR or TSI: leave those lines out rather than print them empty
    return head + [_pair(k, v) for k, v in rows if v] + _sale_tail(sale_id)
