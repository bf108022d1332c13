"""Receipts print once; a print begun but not confirmed is reprinted marked as a duplicate.

firmware.sale.pumpwork.PumpWork prints; firmware.sale.runner.SaleRunner.recover prints what a restart finds
unprinted. The SaleWorld's ports are small fakes below (no pcscd, no mosquitto, no pump line); the printer
is the real python-escpos memory backend.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import PrinterError
from contracts.messages import AuthAnswer
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from drivers.printer import open_printer
from firmware.programs.base import Figures
from firmware.programs.fleet import FleetProgram
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.pumpwork import PumpWork
from firmware.sale.record import Preset
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleWorld
from firmware.station import Station
from hostsim.escpos_decode import decode_escpos

CONFIG = {"station_name": "Test Station", "currency": "EUR",
          "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel",
                      "price_milli": 1659}]}
FINISHED = 1_800_000_000.0


class FlakyPrinter:
    """The real python-escpos memory backend; the first `fail` jobs fail as a jammed printer would."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.inner = open_printer("memory://")
        self.jobs: list[str] = []

    def print_lines(self, lines: Sequence[ReceiptLine]) -> None:
        if self.fail:
            self.fail -= 1
            raise PrinterError("paper jam")
        before = len(self.inner.output)
        self.inner.print_lines(lines)
        self.jobs.append(decode_escpos(self.inner.output[before:]).text())


class Screens:
    """The cardholder port and the status display: records what is shown; asks nothing."""

    def __init__(self) -> None:
        self.shown: list[tuple[Screen, dict[str, Any]]] = []

    languages = ("en",)

    def show(self, screen: Screen, **fields: Any) -> None:
        self.shown.append((screen, fields))

    status = show

    def notice(self, screen: Screen, seconds: float, **fields: Any) -> None:
        self.shown.append((screen, fields))

    def __getattr__(self, name: str) -> Any:       # choose_pump, pin_block, ...: never asked here
        raise AssertionError(f"the cardholder was asked {name}")


class NoPumps:
    """The pump line: printing a receipt never touches it."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise AssertionError(f"the pump line was used: {name}")


class OfflineRegistry:
    """FleetProgram's registry; printing never asks it."""

    online = False

    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int) -> AuthAnswer:
        raise AssertionError("the registry was asked")


class FixedClock:
    def monotonic(self) -> float:
        return 1000.0

    def time(self) -> float:
        return FINISHED

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(FINISHED, dt.UTC)


def world(journal: Journal, printer: FlakyPrinter, screens: Screens) -> SaleWorld:
    def spawn(name: str, work: Callable[[], None]) -> None:
        raise AssertionError(f"nothing is followed here: {name}")

    return SaleWorld(terminal="T-0001", station_id="ST-001", pump_numbers=(1,),
                     programs=[FleetProgram(OfflineRegistry())], port=screens, display=screens,  # type: ignore[arg-type]
                     pumps=NoPumps(), printer=printer, journal=journal,  # type: ignore[arg-type]
                     station=lambda: Station.from_config(CONFIG, "ST-001"), token_key=b"k" * 32, spawn=spawn,
                     clock=FixedClock())


def released_sale(journal: Journal) -> str:
    """A fleet sale whose pump was released (state pump_authorized), as the sale machine journals it."""
    sale_id, auth = str(uuid.uuid4()), str(uuid.uuid4())
    journal.begin_sale(sale_id, 1, "707700******0019", "token", program="fleet")
    journal.transition(sale_id, SaleState.AUTHORIZING)
    journal.transition(sale_id, SaleState.APPROVED, preset=Preset.volume(15000), nozzles=[1], reference=auth,
                       data={"registry_auth": auth})
    journal.transition(sale_id, SaleState.PUMP_AUTHORIZED, totals_before={1: (100, 166)})
    return sale_id


def completed_sale(journal: Journal, volume_cl: int = 2000, amount_cents: int = 3318) -> str:
    sale_id = released_sale(journal)
    journal.transition(sale_id, SaleState.COMPLETED, nozzle=1, product="diesel", volume_cl=volume_cl,
                       amount_cents=amount_cents, charged_cents=amount_cents, price_milli=1659,
                       finished_at=FINISHED)
    return sale_id


class Setup:
    def __init__(self, tmp_path: Path, fail: int) -> None:
        self.path = tmp_path / "journal.db"
        self.journal = Journal(self.path)
        self.printer = FlakyPrinter(fail)
        self.screens = Screens()
        self.runner = SaleRunner(world(self.journal, self.printer, self.screens))
        self.work: PumpWork = self.runner.pump

    def restart(self) -> None:
        """The terminal restarts: it reopens its journal and builds its sale machine again."""
        self.journal.close()
        self.journal = Journal(self.path)
        self.screens = Screens()
        self.runner = SaleRunner(world(self.journal, self.printer, self.screens))
        self.work = self.runner.pump

    def close(self) -> None:
        self.journal.close()


@pytest.fixture
def make(tmp_path: Path) -> Any:
    made: list[Setup] = []

    def build(fail: int) -> Setup:
        made.append(Setup(tmp_path, fail))
        return made[-1]

    yield build
    for s in made:
        s.close()


def test_receipt_prints_once(make: Callable[[int], Setup]) -> None:
    s = make(0)
    sale_id = completed_sale(s.journal)
    s.work.print_receipt(s.journal.get(sale_id))
    s.work.print_receipt(s.journal.get(sale_id))
    assert s.runner.recover() == []
    assert len(s.printer.jobs) == 1 and "DUPLICATE" not in s.printer.jobs[0]
    assert "20.00 L" in s.printer.jobs[0] and "33.18 EUR" in s.printer.jobs[0]
    assert sale_id in s.printer.jobs[0]
    rec = s.journal.get(sale_id)
    assert rec.receipt_started and rec.receipt_printed
    thanks = {"volume_cl": 2000, "amount_cents": 3318, "currency": "EUR"}
    assert s.screens.shown == [(Screen.PRINTING, {}), (Screen.THANK_YOU, thanks)]


def test_printer_fault_then_recovery_prints_a_marked_duplicate(make: Callable[[int], Setup]) -> None:
    s = make(1)
    sale_id = completed_sale(s.journal)
    s.work.print_receipt(s.journal.get(sale_id))
    rec = s.journal.get(sale_id)
    assert s.printer.jobs == [] and rec.receipt_started and not rec.receipt_printed
    assert s.screens.shown == [(Screen.PRINTING, {})]  # no "thank you" for a receipt that did not print
    s.restart()
    s.runner.recover()                                 # after a restart
    assert len(s.printer.jobs) == 1 and "*** DUPLICATE ***" in s.printer.jobs[0]
    assert "33.18 EUR" in s.printer.jobs[0]
    assert s.journal.get(sale_id).receipt_printed
    s.runner.recover()                                 # printed: never again
    assert len(s.printer.jobs) == 1


def test_crash_between_print_and_mark_reprints_as_duplicate(make: Callable[[int], Setup]) -> None:
    s = make(0)
    sale_id = completed_sale(s.journal)
    s.journal.mark(sale_id, "receipt_started")        # what a crash right after printing leaves behind
    s.restart()                                       # the restarted terminal reopens its journal
    s.runner.recover()
    assert len(s.printer.jobs) == 1 and "*** DUPLICATE ***" in s.printer.jobs[0]
    assert s.journal.get(sale_id).receipt_printed


def test_a_sale_completed_by_the_pump_work_prints_then_a_fault_leaves_a_duplicate(
        make: Callable[[int], Setup]) -> None:
    """Through PumpWork.complete, as a settled sale reaches the printer: a jam leaves the print begun."""
    s = make(1)
    sale_id = released_sale(s.journal)
    completed: list[str] = []
    s.runner.world.on_completed = lambda: completed.append(sale_id)
    s.work.complete(s.journal.get(sale_id),
                    Figures(nozzle=1, product="diesel", volume_cl=2000, amount_cents=3318, price_milli=1659),
                    recovered=False)
    rec = s.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and (rec.volume_cl, rec.charged_cents) == (2000, 3318)
    assert completed == [sale_id]
    assert s.printer.jobs == [] and rec.receipt_started and not rec.receipt_printed
    assert [r.id for r in s.journal.unprinted()] == [sale_id]
    s.runner.recover()
    assert len(s.printer.jobs) == 1 and "*** DUPLICATE ***" in s.printer.jobs[0]
    assert "20.00 L" in s.printer.jobs[0]
    assert s.journal.unprinted() == []


def test_nothing_dispensed_prints_nothing(make: Callable[[int], Setup]) -> None:
    s = make(0)
    sale_id = completed_sale(s.journal, volume_cl=0, amount_cents=0)
    s.work.print_receipt(s.journal.get(sale_id))
    s.runner.recover()
    rec = s.journal.get(sale_id)
    assert s.printer.jobs == [] and not rec.receipt_started and not rec.receipt_printed
    assert s.screens.shown == [(Screen.NO_FUEL, {})]

