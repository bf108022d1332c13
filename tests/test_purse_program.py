"""firmware.programs.purse: a sale paid from a wallet on the chip, with no registry. The real SaleRunner and
Journal run the sale; the card is the simulator's purse card and the SAM the simulator's SAM, both
personalised here by a test issuer (its masters and CA), so every MAC the terminal relays is real."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from contracts import purse_sam_apdu as sa
from contracts import purse_session as ps
from contracts.errors import CardRemoved
from contracts.purse_keys import Purpose, Unit, derive_card_key, derive_sam_key
from contracts.purse_records import RECORD_LEN, Kind, open_signed
from contracts.purse_seal import sam_key_context, seal_for_sam
from contracts.purse_wallets import Wallet
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.programs.base import ChipCard
from firmware.programs.purse.book import PurseBook
from firmware.programs.purse.pending import GRACE_SECONDS
from firmware.programs.purse.program import PENDING_FLAG, PURSE, PurseProgram
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleTimeouts, SaleWorld
from firmware.station import NozzlePrice, Station
from hostsim.cards.fleet import FleetCard
from hostsim.cards.purse_card import PurseCard, personalize
from hostsim.cards.purse_sam import PurseSam
from tests.sale_fakes import CANCEL, FakeClock, FakePumps, ListPrinter, ScriptedCardholder

PURPOSES = (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN, Purpose.SAM)
MASTERS = {p: bytes([n]) * 16 for n, p in enumerate(PURPOSES, start=1)}
CA = ec.generate_private_key(ec.SECP256R1())
PURSE_ID = bytes.fromhex("7077000000000042")
EXPIRES = 2_000_000_000
PIN = "1234"
PIN_BLOCK = bytes.fromhex("241234FFFFFFFFFF")      # ISO 9564 format 2, as the PIN pad gives an offline PIN
STATION = Station("Test", prices=(NozzlePrice(1, 1, "diesel", "Diesel", 1659),
                                  NozzlePrice(1, 2, "petrol95", "Super 95", 1789),
                                  NozzlePrice(2, 1, "diesel", "Diesel", 1659)),
                  codes3=(("diesel", 19), ("petrol95", 1)))
DIESEL = Wallet(number=0, unit=Unit.VOLUME, balance=10000, products=((19, 19),), expiry=20301231,
                day_limit=6000)
FILL = ("lift", ("flow", 1500), "hang_up")


def card_key(purpose: Purpose) -> bytes:
    return derive_card_key(MASTERS[purpose], PURSE_ID, purpose, version=1)


def new_card(*wallets: Wallet) -> PurseCard:
    keys = {(p, 1): card_key(p) for p in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN)}

    def certify(public: bytes) -> bytes:
        return ps.issue_certificate(CA, ps.Certificate(ps.Role.CARD, PURSE_ID, 1, EXPIRES, public))
    return personalize(FleetCard("7077001234560019", "3012", "ACME HAULAGE"), purse_id=PURSE_ID, keys=keys,
                       pin=PIN, wallets=wallets or (DIESEL,), ca_public_key=ps.public_bytes(CA),
                       certify=certify)


def new_sam(sam_id: bytes) -> PurseSam:
    sam = PurseSam(sam_id)
    sam.apdu(sa.select())
    public = sa.split_answer(sam.apdu(sa.generate_key_pair()))[0]
    cert = ps.issue_certificate(CA, ps.Certificate(ps.Role.SAM, sam_id, 1, EXPIRES, public))
    assert sa.split_answer(sam.apdu(sa.put_certificate(cert, ps.public_bytes(CA))))[1] == 0x9000
    key = derive_sam_key(MASTERS[Purpose.SAM], sam_id, version=1)
    box = seal_for_sam(public, key, context=sam_key_context(sam_id, 1))
    assert sa.split_answer(sam.apdu(sa.put_sam_key(1, box)))[1] == 0x9000
    return sam


class Slot:
    """A card reader slot holding one virtual card (the terminal's Transmitter)."""

    def __init__(self, card: Any) -> None:
        self.card = card
        self.present = True
        card.power_on()

    refuse_ins: int | None = None      # the SAM answers this instruction with 6F00 (a SAM fault)

    def transmit(self, apdu: bytes) -> bytes:
        if not self.present:
            raise CardRemoved("card pulled")
        if self.refuse_ins is not None and apdu[1] == self.refuse_ins:
            return b"\x6f\x00"
        answer: bytes = self.card.apdu(apdu)
        return answer


@dataclass
class Terminal:
    """One terminal: its journal, its SAM, the purse program and a pump with diesel and Super 95."""
    tmp: Path
    name: str = "T-1"
    sam_id: bytes = bytes.fromhex("5A4D000000000001")
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.journal = Journal(self.tmp / f"{self.name}.db")
        self.book = PurseBook(self.journal)
        self.sam = Slot(new_sam(self.sam_id))
        self.program = PurseProgram(self.sam, self.book, most_cents=15000, most_cl=6000)

    def serve(self, card: PurseCard, *, events: tuple[Any, ...] = FILL, later: list[Any] | None = None,
              **script: list[Any]) -> tuple[str | None, ScriptedCardholder]:
        """later: the pump's work is kept there to run when the test says (a filling that ends after the
        next card came in), else it runs at once."""
        pumps = FakePumps(self.clock, pumps=(1, 2))
        pumps.customer(*events)
        pumps.customer(*events, pump=2)
        port = ScriptedCardholder(**({"offline_pin": [PIN_BLOCK], "pump": [1]} | script))
        world = SaleWorld(terminal=self.name, station_id="S", pump_numbers=(1, 2), programs=[self.program],
                          port=port, display=port, pumps=pumps, printer=ListPrinter(), journal=self.journal,
                          station=lambda: STATION, token_key=b"k" * 32,
                          spawn=(lambda name, work: work()) if later is None else (
                              lambda name, work: later.append(work)),
                          clock=self.clock, timeouts=SaleTimeouts(nozzle_lift=60.0, filling=600.0,
                                                                  pump_offline=30.0))
        return SaleRunner(world).serve(ChipCard(Slot(card), b"\x3b")), port


@pytest.fixture
def terminal(tmp_path: Path) -> Any:
    made: list[Terminal] = []

    def build(**kw: Any) -> Terminal:
        made.append(Terminal(tmp_path, **kw))
        return made[-1]
    yield build
    for t in made:
        t.journal.close()


def balance(card: PurseCard, wallet: int = 0) -> int:
    return card.purse.state.stored.wallets[wallet].balance


def test_the_card_pays_offline_and_signs_what_it_debited(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    sale_id, port = t.serve(card)
    rec = t.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and rec.volume_cl == 1500 and PENDING_FLAG not in rec.flags
    assert balance(card) == 10000 - 1500
    (out,) = t.book.outgoing()
    record = open_signed(card_key(Purpose.RECORD), out.signed)          # the issuer's check
    assert (record.kind, record.amount, record.previous_balance, record.new_balance) == (
        Kind.PURCHASE, 1500, 10000, 8500)
    assert record.terminal == t.sam_id and record.product == 19
    assert out.sam_sequence == 1 and out.sam_mac is not None and sa.verify_sam_record_mac(
        derive_sam_key(MASTERS[Purpose.SAM], t.sam_id, version=1), out.signed, 1, out.sam_mac)
    doc = rec.data[PURSE]
    assert doc["balance"] == 8500 and doc["debited"] == 1500 and rec.preset is not None
    assert rec.preset.kind == "volume" and rec.preset.value == 6000      # the day's limit, below the balance
    assert Screen.KEEP_CARD in port.shown()
    assert t.book.sale_for(PURSE_ID, record.counter) == sale_id
    assert PIN not in repr(rec.data)


def test_a_wrong_pin_is_counted_by_the_card(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    sale_id, port = t.serve(card, offline_pin=[bytearray(bytes.fromhex("249999FFFFFFFFFF"))])
    assert sale_id is None                          # the card said no before any sale began
    declined = [f for s, f in port.screens if s is Screen.DECLINED]
    assert declined and declined[-1]["reason"] is DeclineReason.WRONG_PIN
    assert card.purse.state.stored.pin_tries == 2 and balance(card) == 10000


def test_a_card_pulled_before_settling_is_completed_once_at_its_next_insertion(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    card.tear_at("settle", "before_commit")            # pulled as the filling ends
    sale_id, _ = t.serve(card)
    rec = t.journal.get(sale_id)
    assert rec.state is SaleState.COMPLETED and PENDING_FLAG in rec.flags
    assert balance(card) == 10000 and t.book.outgoing() == []
    t.serve(card, offline_pin=[CANCEL])                # back in: the pending purchase first, then the PIN
    assert balance(card) == 8500
    (out,) = t.book.outgoing()
    assert open_signed(card_key(Purpose.RECORD), out.signed).amount == 1500
    t.serve(card, offline_pin=[CANCEL])                # and never twice
    assert balance(card) == 8500 and len(t.book.outgoing()) == 1


def test_another_terminal_waits_for_the_grace_time_then_takes_the_whole_reserve(terminal: Any) -> None:
    first, second = terminal(name="T-1"), terminal(name="T-2", sam_id=bytes.fromhex("5A4D000000000002"))
    card = new_card()
    card.tear_at("settle", "before_commit")
    first.serve(card)
    _, port = second.serve(card, offline_pin=[CANCEL])
    declined = [f for s, f in port.screens if s is Screen.DECLINED]
    assert declined[-1]["reason"] is DeclineReason.PURCHASE_OPEN and balance(card) == 10000
    second.clock.advance(GRACE_SECONDS + 60)
    second.serve(card, offline_pin=[CANCEL])
    assert balance(card) == 10000 - 6000               # the reserve: the registry credits back the rest
    (out,) = second.book.outgoing()
    assert open_signed(card_key(Purpose.RECORD), out.signed[:RECORD_LEN + 16]).kind is Kind.RECOVERED


def test_the_cards_own_day_counter_refuses_the_second_filling(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    t.serve(card, events=("lift", ("flow", 6000)))     # the day's 60 L at once (the preset stops it)
    assert balance(card) == 4000
    sale_id, port = t.serve(card)
    declined = [f for s, f in port.screens if s is Screen.DECLINED]
    assert declined[-1]["reason"] is DeclineReason.LIMIT_EXHAUSTED and balance(card) == 4000
    t.clock.advance(24 * 3600)                          # the next day the card's day counter starts again
    sale_id, _ = t.serve(card)
    assert t.journal.get(sale_id).volume_cl == 1500 and balance(card) == 2500


def test_a_money_wallet_pays_its_product_and_the_card_keeps_the_cents(terminal: Any) -> None:
    t = terminal()
    money = Wallet(number=0, unit=Unit.MONEY, balance=5000, products=((1, 1),), expiry=20301231)
    card = new_card(money)
    sale_id, _ = t.serve(card, events=(("lift", 2), ("flow", 1000), "hang_up"))
    rec = t.journal.get(sale_id)
    assert rec.preset is not None and (rec.preset.kind, rec.preset.value) == ("amount", 5000)
    assert rec.nozzles == (2,) and rec.charged_cents == 1789          # 10 L of Super 95 at 1.789
    assert balance(card) == 5000 - 1789


def test_a_wallet_for_other_products_is_not_spent(terminal: Any) -> None:
    t = terminal()
    adblue = Wallet(number=0, unit=Unit.VOLUME, balance=5000, products=((62, 62),), expiry=20301231)
    card = new_card(adblue)
    _, port = t.serve(card)
    declined = [f for s, f in port.screens if s is Screen.DECLINED]
    assert declined[-1]["reason"] is DeclineReason.PRODUCT_NOT_ALLOWED and balance(card) == 5000


def test_a_card_pulled_as_it_reserved_is_completed_with_nothing_here(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    card.tear_at("reserve", "after_commit")            # the card reserved, its answer never came
    sale_id, _ = t.serve(card)
    assert sale_id is not None                      # begun before RESERVE, declined with nothing dispensed
    rec = t.journal.get(sale_id)
    assert rec.state is SaleState.DECLINED and not rec.volume_cl
    assert card.purse.state.stored.pending is not None
    t.serve(card, offline_pin=[CANCEL])
    assert card.purse.state.stored.pending is None and balance(card) == 10000
    (out,) = t.book.outgoing()
    assert open_signed(card_key(Purpose.RECORD), out.signed).amount == 0


def test_a_filling_that_ends_after_another_card_came_in_never_settles_on_that_card(terminal: Any) -> None:
    """Card A reserves for pump 1 and is pulled; card B opens the SAM's session; A's filling ends: its
    settle must not reach B through B's session. A completes at its next insertion, B pays its own."""
    t = terminal()
    first, second = new_card(), new_card()
    first_pump: list[Any] = []
    t.serve(first, later=first_pump)                          # A: reserved, pump released, filling
    second_pump: list[Any] = []
    t.serve(second, later=second_pump, pump=[2])              # B at pump 2: a new SAM session, its reserve
    first_pump[0]()                                           # A's filling ends now
    assert balance(second) == 10000 and balance(first) == 10000
    second_pump[0]()
    assert balance(second) == 8500
    t.serve(first, offline_pin=[CANCEL])                      # A back: completed with its own 15 L
    assert balance(first) == 8500 and first.purse.state.stored.pending is None


def test_a_pump_past_its_preset_settles_the_reserve_not_more(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    sale_id, _ = t.serve(card, events=("lift", ("over", 6100), "hang_up"))
    rec = t.journal.get(sale_id)
    assert rec.volume_cl == 6100 and "over_authorized" in rec.flags and PENDING_FLAG not in rec.flags
    assert balance(card) == 10000 - 6000                      # the card took what it had reserved


def test_a_record_the_sam_would_not_mac_is_kept_all_the_same(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    t.sam.refuse_ins = sa.INS_MAC_RECORD
    t.serve(card)
    (out,) = t.book.outgoing()
    assert out.sam_mac is None and open_signed(card_key(Purpose.RECORD), out.signed).amount == 1500
    assert balance(card) == 8500


def test_a_blocked_pin_is_declined_without_asking_for_it(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    for _ in range(3):
        t.serve(card, offline_pin=[bytearray(bytes.fromhex("249999FFFFFFFFFF"))])
    _, port = t.serve(card, offline_pin=[])                   # the script has no PIN: asking fails the test
    declined = [f for s, f in port.screens if s is Screen.DECLINED]
    assert declined[-1]["reason"] is DeclineReason.PIN_TRIES_EXCEEDED


def test_records_wait_in_counter_order_and_advices_go_fifty_at_a_time(terminal: Any) -> None:
    t = terminal()
    card = new_card()
    for _ in range(3):
        t.serve(card, events=("lift", ("flow", 100), "hang_up"))
    counters = [open_signed(card_key(Purpose.RECORD), o.signed).counter for o in t.book.outgoing()]
    assert counters == sorted(counters) and len(counters) == 3
    for n in range(60):
        t.book.advise(PURSE_ID, 100 + n, 0, str(uuid.uuid4()))
    sent: list[int] = []

    class Registry:
        online = True

        def records(self, sam_id: bytes, items: Any, advices: Any) -> dict[str, int]:
            sent.append(len(advices))
            return {"counted": len(items), "duplicate": 0, "flagged": 0}
    t.program.service = Registry()
    t.program.sam_id = t.sam_id
    t.program.forward()
    t.program.forward()
    assert sent == [50, 10] and t.book.outgoing() == [] and t.book.advices() == {}
