"""Receipts print once; a print begun but not confirmed is reprinted marked as a duplicate."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from contracts.errors import PrinterError
from drivers.printer import open_printer
from firmware.config import TimeoutsSection
from firmware.journal import Journal
from firmware.sale import Devices, SaleFlow
from hostsim.escpos_decode import decode_escpos

CONFIG = {"station_name": "Test Station", "currency": "EUR",
          "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel",
                      "price_milli": 1659}]}


class FlakyPrinter:
    """The real python-escpos memory backend; the first `fail` jobs fail as a jammed printer would."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.inner = open_printer("memory://")
        self.jobs: list[str] = []

    def print_lines(self, lines: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise PrinterError("paper jam")
        before = len(self.inner.output)
        self.inner.print_lines(lines)
        self.jobs.append(decode_escpos(self.inner.output[before:]).text())


class Panel:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, screen: str, **fields: Any) -> None:
        self.shown.append(screen)

    def read_key(self, timeout: float) -> str | None:
        return None


def setup(tmp_path: Path, fail: int) -> tuple[SaleFlow, Journal, FlakyPrinter, str]:
    journal = Journal(tmp_path / "journal.db")
    sale_id = str(uuid.uuid4())
    journal.begin_sale(sale_id, 1, "707700******0019", "token")
    journal.transition(sale_id, "approved", auth_id=str(uuid.uuid4()), allowed_cl=15000, nozzles=[1])
    journal.transition(sale_id, "completed", nozzle=1, product="diesel", volume_cl=2000, amount_cents=3318,
                       price_milli=1659, finished_at=1_800_000_000.0)
    printer = FlakyPrinter(fail)
    host = SimpleNamespace(config=CONFIG, kick=lambda: None)
    devices = Devices(reader=None, panel=Panel(), pinpad=None, pumps=None, printer=printer)  # type: ignore[arg-type]
    flow = SaleFlow(terminal="T-0001", station="ST-001", pumps=(1,), devices=devices, journal=journal,
                    host=host, token_key=b"k" * 32, timeouts=TimeoutsSection())  # type: ignore[arg-type]
    return flow, journal, printer, sale_id


def test_receipt_prints_once(tmp_path: Path) -> None:
    flow, journal, printer, sale_id = setup(tmp_path, fail=0)
    flow.print_receipt(journal.get(sale_id))
    flow.print_receipt(journal.get(sale_id))
    flow.recover()
    assert len(printer.jobs) == 1 and "DUPLICATE" not in printer.jobs[0]
    assert "20.00 L" in printer.jobs[0] and "33.18 EUR" in printer.jobs[0]
    assert journal.get(sale_id).receipt_printed


def test_printer_fault_then_recovery_prints_a_marked_duplicate(tmp_path: Path) -> None:
    flow, journal, printer, sale_id = setup(tmp_path, fail=1)
    flow.print_receipt(journal.get(sale_id))
    rec = journal.get(sale_id)
    assert printer.jobs == [] and rec.receipt_started and not rec.receipt_printed
    flow.recover()                                   # after a restart
    assert len(printer.jobs) == 1 and "*** DUPLICATE ***" in printer.jobs[0]
    assert journal.get(sale_id).receipt_printed


def test_crash_between_print_and_mark_reprints_as_duplicate(tmp_path: Path) -> None:
    flow, journal, printer, sale_id = setup(tmp_path, fail=0)
    journal.mark(sale_id, "receipt_started")        # what a crash right after printing leaves behind
    journal.close()
    flow.journal = Journal(tmp_path / "journal.db")     # the restarted terminal reopens its journal
    flow.recover()
    assert len(printer.jobs) == 1 and "*** DUPLICATE ***" in printer.jobs[0]
