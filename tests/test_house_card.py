"""A card program that lives only in this module: the station's own "house card", 10 L of diesel a sale.

It runs whole sales through the real sale machine (SaleRunner), the real journal (SQLite in tmp_path), the
DART driver on its shipped simulator (sim://, a pty), a python-escpos receipt (memory://), with a scripted
cardholder; no file of the sale core or of the other programs is touched. In production the same program
would be one package plus one line in firmware.programs.PROGRAMS
(test_the_program_table_takes_it_by_one_line).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from contracts.errors import ConfigError
from contracts.messages import AuthAnswer
from contracts.pump import PumpState
from contracts.reasons import DeclineReason
from contracts.receipt import WIDTH, ReceiptLine
from drivers.cardreader.memory import MemoryReader
from drivers.devices import open_device
from firmware import tlv
from firmware.hostlink import sale_payload
from firmware.programs import PROGRAMS, build_programs
from firmware.programs.base import (
    CardIn,
    ChipCard,
    Claim,
    Contactless,
    Decline,
    Figures,
    Grant,
    Question,
    ReceiptHead,
    SaleSteps,
)
from firmware.programs.build import ProgramDeps
from firmware.programs.fleet.program import FleetProgram
from firmware.receipt import format_litres, format_money
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord
from firmware.sale.world import SystemClock
from tests.sale_fakes import CANCEL, ScriptedCardholder, make_runner

# -- the program --------------------------------------------------------------------------------------
HOUSE_AID = bytes.fromhex("F0484F555345")          # F0 (unregistered provider) + "HOUSE"
SELECT_HOUSE = bytes([0x00, 0xA4, 0x04, 0x00, len(HOUSE_AID)]) + HOUSE_AID + b"\x00"
HOUSE_PAN = "6009990000000016"                      # Luhn-valid
GRANT_CL = 1000
OK = b"\x90\x00"


class HouseCard:
    """The house card: a chip card answering SELECT of HOUSE_AID with its number (5A) gets 10 L of diesel.
    The cardholder types the vehicle number; vehicles in `barred` are refused. What is charged is booked
    in `ledger` once per sale (settle may run again after a crash)."""

    name = "house"

    def __init__(self, ledger: dict[str, int] | None = None, barred: tuple[str, ...] = ("0000",)) -> None:
        self.ledger: dict[str, int] = {} if ledger is None else ledger
        self.barred = barred
        self.recovered: list[str] = []

    def claim(self, card: CardIn) -> Claim | Decline | None:
        if not isinstance(card, ChipCard):
            return None
        answer = card.reader.transmit(SELECT_HOUSE)
        if answer[-2:] != OK:
            return None
        pan = (tlv.find(answer[:-2], 0x5A) or b"").hex().upper().rstrip("F")
        return Claim(self, pan)

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        pump = steps.choose_pump()
        diesel = tuple(p.nozzle for p in steps.station().prices if p.pump == pump and p.product == "diesel")
        if not diesel:
            return Decline(DeclineReason.PRODUCT_NOT_ALLOWED)
        steps.begin(pump, claim.card)
        vehicle = steps.port.ask(Question("vehicle", max_len=6))
        steps.authorizing({"vehicle": vehicle})
        if vehicle in self.barred:
            return Decline(DeclineReason.UNKNOWN_CARD)
        return Grant(Preset.volume(GRANT_CL), nozzles=diesel, reference=f"HOUSE-{vehicle}",
                     data={"vehicle": vehicle})

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        self.ledger.setdefault(sale.id, charged_cents)
        return ()

    def recover(self, sale: SaleRecord) -> Decline:
        self.recovered.append(sale.id)
        return Decline(DeclineReason.INTERRUPTED)

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        charged = sale.charged_cents if sale.charged_cents is not None else head.amount_cents
        lines = [ReceiptLine(head.station_name, bold=True, center=True)]
        if head.copy:
            lines.append(ReceiptLine("*** DUPLICATE ***", bold=True, center=True))
        return lines + [
            ReceiptLine(f"Pump {head.pump}  {head.product}"),
            ReceiptLine(f"{format_litres(head.volume_cl)} L x {head.price_milli / 1000:.3f}"),
            ReceiptLine(f"TOTAL {format_money(head.amount_cents, head.currency)}", bold=True),
            ReceiptLine(f"House card {head.card_masked}"),
            ReceiptLine(f"Vehicle {sale.data.get('vehicle', '')}"),
            ReceiptLine(f"Charged to account {format_money(charged, head.currency)}"),
            ReceiptLine(head.sale_id[:WIDTH]),
            ReceiptLine("Thank you", center=True),
        ]


def build(deps: ProgramDeps) -> HouseCard:
    """The program's build function, as firmware.programs.PROGRAMS names it."""
    return HouseCard()


class Voucher:
    """An adjunct: a contactless voucher tag read before the payment card takes 1.00 off the fuel."""

    name = "voucher"

    def claim(self, card: CardIn) -> Mapping[str, Any] | None:
        if isinstance(card, Contactless) and card.uid.startswith(b"VCH"):
            return {"code": card.uid.decode()}
        return None

    def discount(self, doc: Mapping[str, Any], figures: Figures) -> int:
        return 100

    def receipt(self, doc: Mapping[str, Any], sale: SaleRecord) -> list[ReceiptLine]:
        return [ReceiptLine(f"Voucher {doc['code']} -1.00 EUR")]


class HouseChip:
    """The card in a drivers.cardreader.memory reader (its SimulatedCard protocol)."""

    atr = bytes.fromhex("3B00")

    def __init__(self, pan: str = HOUSE_PAN) -> None:
        self.pan = pan

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def apdu(self, command: bytes) -> bytes:
        if command == SELECT_HOUSE:
            fci = tlv.encode(0x84, HOUSE_AID) + tlv.encode(0x5A, bytes.fromhex(self.pan))
            return tlv.encode(0x6F, fci) + OK
        return b"\x6a\x82"                          # no such application (the fleet SELECT gets this)


def house_card_in(reader: MemoryReader | None = None) -> ChipCard:
    reader = reader or MemoryReader()
    reader.insert(HouseChip())
    return ChipCard(reader, reader.connect())


class UnusedRegistry:
    """The fleet program's registry: a house card must never reach it."""
    online = True

    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int) -> AuthAnswer:
        raise AssertionError("a house card reached the fleet registry")


# -- a whole sale on the DART simulator ---------------------------------------------------------------
class Threads:
    """world.spawn: each pump follower on a thread, joined by the test."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __call__(self, name: str, work: Callable[[], None]) -> None:
        t = threading.Thread(target=work, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(10.0)
            assert not t.is_alive(), "pump follower did not finish"


@pytest.fixture
def pumps() -> Iterator[Any]:
    ctl = open_device("pump_line", "sim://?flow=5000", pumps=(1,), reply_timeout=0.2, poll_interval=0.005)
    try:
        ctl.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 3.0)
        ctl.set_prices(1, {1: 1659, 2: 1789})          # the simulator's nozzle 1 is diesel, as the station's
        ctl.wait_status(1, lambda s: s.state is PumpState.RESET, 3.0)
        yield ctl
    finally:
        ctl.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()


def run_sale(pumps: Any, journal: Journal, program: HouseCard, port: ScriptedCardholder,
             adjuncts: tuple[Any, ...] = (), before: tuple[CardIn, ...] = ()) -> tuple[str | None, Any]:
    """Serve the cards; the customer lifts diesel, squeezes for 15 L (the pump stops at 10) and hangs up."""
    printer = open_device("printer", "memory://")
    threads = Threads()
    completed = threading.Event()
    runner = make_runner(journal, [FleetProgram(UnusedRegistry()), program], port, pumps, printer,
                         cast(Any, SystemClock()), adjuncts=adjuncts, spawn=threads,
                         on_completed=completed.set)
    for card in before:
        assert runner.serve(card) is None
    sale_id = runner.serve(house_card_in())
    if sale_id is not None and journal.get(sale_id).state is SaleState.PUMP_AUTHORIZED:
        customer = pumps.simulator.pump(1)
        customer.lift(1)
        assert customer.dispense(1500, timeout=5.0) == GRANT_CL
        customer.hang_up()
    threads.join()
    return sale_id, printer


def test_a_house_card_sale_from_card_to_receipt(pumps: Any, journal: Journal) -> None:
    program = HouseCard()
    port = ScriptedCardholder(vehicle=["4711"])
    sale_id, printer = run_sale(pumps, journal, program, port)

    assert sale_id is not None
    rec = journal.get(sale_id)
    amount = (GRANT_CL * 1659 + 500) // 1000
    assert rec.state is SaleState.COMPLETED and rec.program == "house"
    assert (rec.nozzle, rec.product, rec.volume_cl, rec.amount_cents, rec.charged_cents, rec.price_milli) == (
        1, "diesel", GRANT_CL, amount, amount, 1659)
    assert rec.preset == Preset.volume(GRANT_CL) and rec.nozzles == (1,) and rec.reference == "HOUSE-4711"
    assert rec.flags == () and not rec.recovered and rec.receipt_printed
    assert rec.card_masked == "600999******0016" and HOUSE_PAN not in str(journal.events(sale_id))
    assert [s for s, _ in journal.events(sale_id)] == [
        "created", "authorizing", "approved", "pump_authorized", "pump_authorized",   # then its figures
        "completed", "completed", "completed"]
    assert program.ledger == {sale_id: amount}                # charged once
    assert pumps.totals(1, 1).volume_cl == GRANT_CL

    out = printer.output.decode("cp437", "replace")
    assert out.count("House card 600999******0016") == 1 and "Vehicle 4711" in out
    assert "Charged to account 16.59 EUR" in out and "DUPLICATE" not in out
    assert printer.output.count(b"\x1dV") == 1                # one paper cut: one receipt

    payload = sale_payload(rec, "T-0001", "ST-1")
    assert (payload["kind"], payload["auth_id"], payload["volume_cl"], payload["amount_cents"]) == (
        "house", None, GRANT_CL, amount)
    assert [r.id for r in journal.unsynced()] == [sale_id]


def test_a_voucher_read_first_takes_one_euro_off(pumps: Any, journal: Journal) -> None:
    program = HouseCard()
    port = ScriptedCardholder(vehicle=["4711"])
    sale_id, printer = run_sale(pumps, journal, program, port, adjuncts=(Voucher(),),
                                before=(Contactless(b"VCH-100"),))

    assert sale_id is not None
    rec = journal.get(sale_id)
    assert rec.adjuncts == {"voucher": {"code": "VCH-100"}}
    assert rec.state is SaleState.COMPLETED and rec.amount_cents == 1659
    assert rec.charged_cents == rec.amount_cents - 100 and program.ledger == {sale_id: 1559}
    out = printer.output.decode("cp437", "replace")
    assert "Voucher VCH-100 -1.00 EUR" in out and "Charged to account 15.59 EUR" in out
    # the adjunct's lines go before the receipt's last two (sale id, thank you)
    assert out.index("Voucher VCH-100") < out.index(sale_id) < out.index("Thank you")


def test_a_cancelled_vehicle_question_declines_the_journaled_sale(pumps: Any, journal: Journal) -> None:
    program = HouseCard()
    sale_id, printer = run_sale(pumps, journal, program, ScriptedCardholder(vehicle=[CANCEL]))
    assert sale_id is not None
    rec = journal.get(sale_id)
    assert (rec.state, rec.reason) == (SaleState.DECLINED, DeclineReason.CANCELLED)
    assert program.ledger == {} and printer.output == b""
    assert pumps.status(1).state is PumpState.RESET           # never released


def test_the_program_table_takes_it_by_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = ProgramDeps(config=cast(Any, None), journal=cast(Any, None), registry=None, pinpad=None,
                       magstripe=False, open_device=open_device)
    with pytest.raises(ConfigError, match="unknown card program 'house'"):
        build_programs(("house",), deps)
    monkeypatch.setitem(PROGRAMS, "house", f"{__name__}:build")
    built = build_programs(("house",), deps)
    assert [p.name for p in built] == ["house"] and type(built[0]).__name__ == "HouseCard"
