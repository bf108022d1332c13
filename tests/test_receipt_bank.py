"""Bank card receipts: firmware.receipt.bank_receipt content, widths and PAN masking."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.receipt import WIDTH, ReceiptLine
from firmware.receipt import bank_receipt, mask_pan

SALE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def receipt(**over: object) -> list[ReceiptLine]:
    args: dict[str, object] = {
        "station_name": "Forecourt Demo Station", "station": "ST-001", "terminal": "T-0001",
        "sale_id": SALE_ID,
        "when": dt.datetime(2025, 3, 1, 11, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))), "pump": 2,
        "product": "Diesel", "volume_cl": 2000, "price_milli": 1659, "amount_cents": 3318,
        "preauth_cents": 15000, "card_masked": "476173******0119", "app_label": "VISA DEBIT",
        "aid_hex": "a0000000031010", "entry_mode": "Chip (PIN)", "cvm": "PIN verified by card",
        "auth_code": "123456", "tvr_hex": "0000008000", "tsi_hex": "e800"}
    args.update(over)
    return bank_receipt(**args)  # type: ignore[arg-type]


def rows(lines: list[ReceiptLine]) -> list[str]:
    return [line.text for line in lines]


def row(lines: list[ReceiptLine], label: str) -> str:
    found = [r for r in rows(lines) if r.startswith(label + " ")]
    assert len(found) == 1, (label, rows(lines))
    return found[0]


def test_every_field_appears() -> None:
    lines = receipt()
    text = "\n".join(rows(lines))
    assert rows(lines)[0].startswith("Forecourt Demo Station") and lines[0].bold and lines[0].center
    assert "Station ST-001" in text
    assert row(lines, "Date").endswith("2025-03-01 10:11:12 UTC")
    assert row(lines, "Terminal").endswith("T-0001")
    assert row(lines, "Pump").endswith(" 2")
    assert row(lines, "Product").endswith("Diesel")
    assert row(lines, "Volume").endswith("20.00 L")
    assert row(lines, "Unit price").endswith("1.659 EUR/L")
    total = [line for line in lines if line.text.startswith("TOTAL")]
    assert len(total) == 1 and total[0].bold and total[0].text.endswith("33.18 EUR")
    assert row(lines, "Card").endswith("476173******0119")
    assert row(lines, "Application").endswith("VISA DEBIT")
    assert row(lines, "AID").endswith("A0000000031010")
    assert row(lines, "Entry").endswith("Chip (PIN)")
    assert row(lines, "Verification").endswith("PIN verified by card")
    assert row(lines, "Auth code").endswith("123456")
    assert row(lines, "Pre-authorized").endswith("150.00 EUR") and "(partial)" not in text
    assert row(lines, "Charged").endswith("33.18 EUR")
    assert row(lines, "TVR").endswith("0000008000")
    assert row(lines, "TSI").endswith("E800")
    assert SALE_ID in rows(lines)
    assert rows(lines)[-1] == "Thank you"
    assert "DUPLICATE" not in text


def test_partial_preauthorization_is_noted() -> None:
    lines = receipt(preauth_cents=5000, partial=True)
    assert row(lines, "Pre-authorized (partial)").endswith("50.00 EUR")


def test_duplicate_marker() -> None:
    lines = receipt(copy=True)
    marked = [line for line in lines if line.text == "*** DUPLICATE ***"]
    assert len(marked) == 1 and marked[0].bold and marked[0].center


def test_currency_is_used_everywhere() -> None:
    text = "\n".join(rows(receipt(currency="CHF")))
    assert "EUR" not in text and "33.18 CHF" in text and "150.00 CHF" in text and "CHF/L" in text


@pytest.mark.parametrize("pan", ["4761739001010119", "4761 7390 0101 0119", "4761739001010119012"])
def test_a_full_pan_passed_by_mistake_is_masked(pan: str) -> None:
    text = "\n".join(rows(receipt(card_masked=pan)))
    digits = "".join(ch for ch in pan if ch.isdigit())
    assert digits not in text.replace(" ", "")
    card = row(receipt(card_masked=pan), "Card")
    shown = "".join(ch for ch in card if ch.isdigit())
    assert shown == digits[:6] + digits[-4:]


@pytest.mark.parametrize(("value", "masked"), [
    ("4761739001010119", "476173******0119"),
    ("476173******0119", "476173******0119"),          # already masked: unchanged
    ("4761 7390 0101 0119", "4761 73** **** 0119"),    # grouping kept
    ("4761739001****0119", "476173********0119"),      # masked too little
    ("************0119", "************0119"),
    ("1234567890", "1234567890"),                      # 10 digits: nothing hidden needed
    ("", ""),
])
def test_mask_pan(value: str, masked: str) -> None:
    assert mask_pan(value) == masked


@given(st.text(alphabet="0123456789* -", max_size=25))
def test_mask_pan_never_shows_more_than_ten_digits(value: str) -> None:
    out = mask_pan(value)
    assert len(out) == len(value) and sum(ch.isdigit() for ch in out) <= 10
    assert all(o == v or (o == "*" and v.isdigit()) for o, v in zip(out, value, strict=True))


def test_control_bytes_from_the_card_do_not_reach_the_printer() -> None:
    lines = receipt(app_label="VISA\x1b@\x1dV\x00DEBIT", aid_hex="a000\n0000031010")
    assert all(" " <= ch <= "~" for line in lines for ch in line.text)
    assert row(lines, "Application").endswith("VISA@VDEBIT")


@pytest.mark.parametrize("over", [
    {},
    {"copy": True, "partial": True},
    {"station_name": "S" * 80, "product": "Super Plus 98 Premium Unleaded Extra Long", "terminal": "T" * 60,
     "app_label": "L" * 40, "aid_hex": "A0" * 16, "entry_mode": "Magstripe fallback", "cvm": "C" * 50,
     "auth_code": "X" * 50, "tvr_hex": "F" * 50, "tsi_hex": "F" * 50, "card_masked": "5" * 19,
     "amount_cents": 9_999_999_99, "preauth_cents": 9_999_999_99, "volume_cl": 999_999_99},
])
def test_every_line_fits_the_paper(over: dict[str, object]) -> None:
    lines = receipt(**over)
    assert all(len(line.text) <= WIDTH for line in lines), [r for r in rows(lines) if len(r) > WIDTH]


@pytest.mark.parametrize(("approved", "preset", "held"), [(15000, 2000, 15000), (5000, 2000, 5000),
                                                          (None, 15000, 15000)])
def test_the_hold_printed_is_what_the_bank_approved_not_the_drivers_preset(approved: int | None, preset: int,
                                                                          held: int) -> None:
    from firmware.programs.bank.receipt import held_cents
    from firmware.programs.bank.summary import BankSummary
    from firmware.sale.machine import SaleState
    from firmware.sale.record import Preset, SaleRecord

    data = BankSummary(entry_mode="05", preauth_cents=15000, approved_cents=approved).to_doc()
    sale = SaleRecord(
        id=SALE_ID, state=SaleState.COMPLETED, pump=1, program="bank", card_masked="476173******0119",
        card_token="t", preset=Preset.amount(preset), nozzles=(1,), reference="123456", data=data,
        adjuncts={}, nozzle=1, product="diesel", volume_cl=1000, amount_cents=1659, charged_cents=1659,
        price_milli=1659, totals_before=None, reason=None, flags=(), recovered=False, receipt_started=False,
        receipt_printed=False, synced=False, created_at=0.0, finished_at=None)
    assert held_cents(sale) == held
