"""The sale machine, table-driven: its transition table, every program's sale through SaleRunner (fleet,
bank by swipe, and the house card of tests/test_house_card.py), and each crash point and its recovery.

Fakes stand for the card, the hosts, the pump line, the printer and the clock (tests/sale_fakes.py); the
journal and the bank's store-and-forward file are the real ones, in tmp_path. No pcscd, no mosquitto,
nothing sleeps. A crash is a BaseException raised at one point; a NEW runner over the same files recovers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest

from contracts.errors import (
    HostUnavailable,
    HostUnreachable,
    JournalError,
    MessageError,
    PumpLinkError,
    PumpStateError,
)
from contracts.iso8583 import encode
from contracts.messages import AuthAnswer
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import StoreAndForward
from firmware.hostlink import sale_payload
from firmware.programs.bank.advice import AdviceForwarder, Stan
from firmware.programs.bank.program import BankProgram, BankSetup
from firmware.programs.base import CardIn, ChipCard, Swipe
from firmware.programs.fleet.card import FLEET_AID, READ_RECORD_1, SELECT_FLEET
from firmware.programs.fleet.program import FleetProgram
from firmware.sale.journal import Journal
from firmware.sale.machine import OPEN_STATES, TRANSITIONS, Recovery, SaleState, check_move, recovery
from firmware.sale.record import Preset
from firmware.tlv import encode as t
from tests.sale_fakes import (
    CANCEL,
    Crash,
    CrashingJournal,
    FakeClock,
    FakePumps,
    ListPrinter,
    ScriptedCardholder,
    make_runner,
)
from tests.test_house_card import HouseCard, HouseChip

S = SaleState

# == (a) the transition table =============================================================================
PATHS: dict[SaleState, tuple[SaleState, ...]] = {     # how a journaled sale reaches each state
    S.CREATED: (), S.AUTHORIZING: (S.AUTHORIZING,), S.DECLINED: (S.DECLINED,),
    S.APPROVED: (S.AUTHORIZING, S.APPROVED),
    S.PUMP_AUTHORIZED: (S.AUTHORIZING, S.APPROVED, S.PUMP_AUTHORIZED),
    S.COMPLETED: (S.AUTHORIZING, S.APPROVED, S.COMPLETED)}
LEGAL = {(S.CREATED, S.AUTHORIZING), (S.CREATED, S.DECLINED), (S.AUTHORIZING, S.APPROVED),
         (S.AUTHORIZING, S.DECLINED), (S.APPROVED, S.PUMP_AUTHORIZED), (S.APPROVED, S.COMPLETED),
         (S.PUMP_AUTHORIZED, S.COMPLETED)} | {(s, s) for s in S}     # same state: fields only
PAIRS = [pytest.param(a, b, (a, b) in LEGAL, id=f"{a.value}->{b.value}") for a, b in itertools.product(S, S)]


def test_the_table_is_the_documented_graph() -> None:
    moves = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert moves == {p for p in LEGAL if p[0] != p[1]}
    assert set(TRANSITIONS) == set(S) and OPEN_STATES == (S.APPROVED, S.PUMP_AUTHORIZED)


@pytest.mark.parametrize(("current", "new", "legal"), PAIRS)
def test_check_move(current: SaleState, new: SaleState, legal: bool) -> None:
    if legal:
        check_move(current, new)
    else:
        with pytest.raises(JournalError, match="no such move"):
            check_move(current, new)


@pytest.mark.parametrize(("current", "new", "legal"), PAIRS)
def test_journal_transition(tmp_path: Path, current: SaleState, new: SaleState, legal: bool) -> None:
    j = Journal(tmp_path / "j.db")
    try:
        j.begin_sale("s1", 1, "476173******0010", "tok", program="fleet")
        for state in PATHS[current]:
            j.transition("s1", state)
        before = j.events("s1")
        if legal:
            j.transition("s1", new, flags=["x"])
            assert (j.get("s1").state, j.get("s1").flags) == (new, ("x",))
            assert j.events("s1")[-1][0] == new.value and len(j.events("s1")) == len(before) + 1
        else:
            with pytest.raises(JournalError, match="no such move"):
                j.transition("s1", new, flags=["x"])
            assert (j.get("s1").state, j.get("s1").flags) == (current, ())   # nothing written
            assert j.events("s1") == before
    finally:
        j.close()


@pytest.mark.parametrize(("state", "action"), [
    (S.CREATED, Recovery.PROGRAM), (S.AUTHORIZING, Recovery.PROGRAM),
    (S.APPROVED, Recovery.SETTLE_UNRELEASED),
    (S.PUMP_AUTHORIZED, Recovery.PUMP), (S.DECLINED, Recovery.NOTHING), (S.COMPLETED, Recovery.NOTHING),
], ids=lambda v: getattr(v, "value", v))
def test_recovery_per_state(state: SaleState, action: Recovery) -> None:
    assert recovery(state) is action


# == the programs and their hosts =========================================================================
FLEET_PAN, BANK_PAN = "7077001000000019", "4761739001010010"
KEY = bytes(range(32))
TERMINAL = iso.Terminal("AFD00001", "000000000123456", "FORECOURT 1 HIGH STREET")
PREAUTH = 15000
FLEET_OK = AuthAnswer("req-1", True, None, "auth-7c9e6679", 4000, (1,), "707700******0019")


class FleetChip:
    """A fleet card (tests/test_fleet_kernel.py's APDUs): SELECT by name, READ RECORD 1."""

    def __init__(self, expiry: str = "291231") -> None:
        fci = t(0x6F, t(0x84, FLEET_AID))
        rec = t(0x70, t(0x5A, bytes.fromhex(FLEET_PAN)) + t(0x5F24, bytes.fromhex(expiry)))
        self.answers = {SELECT_FLEET: fci + b"\x90\x00", READ_RECORD_1: rec + b"\x90\x00"}

    def transmit(self, apdu: bytes) -> bytes:
        return self.answers.get(bytes(apdu), b"\x6a\x82")


class HouseReader:
    """The house chip's answers without a reader in between."""

    def __init__(self) -> None:
        self.chip = HouseChip()

    def transmit(self, apdu: bytes) -> bytes:
        return self.chip.apdu(bytes(apdu))


class FakeRegistry:
    """firmware.programs.fleet.program.Registry: answers an AuthAnswer or raises. Like registry.service, an
    approval's authorization id is the request id, and the litres stay held (holds) until a synced sale
    names that authorization (book)."""

    def __init__(self, answer: AuthAnswer | BaseException = FLEET_OK, online: bool = True) -> None:
        self.answer, self.online = answer, online
        self.asked: list[int] = []
        self.requests: list[str] = []
        self.holds: set[str] = set()

    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int,
                  request_id: str | None = None) -> AuthAnswer:
        self.asked.append(pump)
        if request_id is None:
            raise AssertionError("the fleet program names its request before asking")
        self.requests.append(request_id)
        if isinstance(self.answer, BaseException):
            raise self.answer
        if not self.answer.approved:
            return self.answer
        self.holds.add(request_id)
        return replace(self.answer, request_id=request_id, auth_id=request_id)

    def book(self, payload: dict[str, Any]) -> None:
        """A synced sale: it completes the authorization it names."""
        self.holds.discard(payload["auth_id"])


class FakeAcquirer:
    """The acquirer's pre-authorization link (saf.Exchanger): a real 0110 for each 0100.
    answer: a response code ("00", "51"), "10:<cents>" for a partial approval, or an exception to raise."""

    def __init__(self, answer: str | BaseException = "00") -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []

    def exchange(self, raw: bytes, timeout: float | None = None) -> bytes:
        doc = iso.decode(raw)
        self.requests.append(doc)
        if isinstance(self.answer, BaseException):
            raise self.answer
        code, _, partial = self.answer.partition(":")
        answer = {"t": "0110", "11": doc["11"], "39": code, "37": "000000000777"}
        if code in ("00", "10"):
            answer |= {"4": doc["4"], "38": "A1B2C3"}
        if partial:
            answer["54"] = f"0090978C{int(partial):012d}"
        return encode(answer)


def swipe(service_code: str = "101", expiry: str = "2812") -> Swipe:
    return Swipe(Track2(BANK_PAN, expiry, service_code, ""))


# bank: (KSN, ISO 9564 format 0 block), what the default dialect carries in field 52
PORTS: dict[str, dict[str, list[Any]]] = {
    "fleet": {"pin": [bytes(8)]}, "house": {"vehicle": ["4711"]}, "bank": {"dukpt": [(bytes(12), bytes(8))]}}


class Env:
    """One terminal: the three programs (fleet, house, bank: the table's order, bank last), the fakes,
    and the journal and store-and-forward files in tmp. restart() is a power cycle: new journal, SAF and
    runner objects over the same files; the pump, the hosts, the printer and the house ledger live on."""

    def __init__(self, tmp: Path, kind: str, *, card: CardIn | None = None, host: Any = None,
                 script: dict[str, list[Any]] | None = None, events: Sequence[Any] = (),
                 pumps: tuple[int, ...] = (1,)) -> None:
        self.tmp, self.kind, self.pump_numbers = tmp, kind, pumps
        self.clock = FakeClock()
        self.pumps = FakePumps(self.clock, pumps)
        self.pumps.customer(*events)
        self.printer = ListPrinter()
        self.port = ScriptedCardholder(**{**PORTS[kind], **(script or {})})
        self.registry = FakeRegistry(host) if kind == "fleet" and host is not None else FakeRegistry()
        self.acquirer = FakeAcquirer(host if kind == "bank" and host is not None else "00")
        self.ledger: dict[str, int] = {}
        self.stan: dict[str, str] = {}
        cards: dict[str, Callable[[], CardIn]] = {"fleet": lambda: ChipCard(FleetChip(), b"\x3b"),
                                                  "house": lambda: ChipCard(HouseReader(), b"\x3b"),
                                                  "bank": swipe}
        self.card = card or cards[kind]()
        self.open()

    def open(self) -> None:
        self.journal = CrashingJournal(self.tmp / "journal.db")
        self.saf = StoreAndForward(self.tmp / "advices.db", KEY)
        setup = BankSetup(
            emv=cast(Any, None), terminal=TERMINAL, link=self.acquirer, saf=self.saf,
            forwarder=AdviceForwarder(self.saf, self.acquirer, timeout=1.0),     # never started: advices wait
            stan=Stan(lambda: self.stan.get("v"), lambda v: self.stan.__setitem__("v", v)),
            preauth_cents=PREAUTH, response_timeout=5.0, home_language="en", keys_left=lambda: True,
            after_pin=lambda: None, magstripe=True)
        self.house = HouseCard(self.ledger)
        self.runner = make_runner(self.journal, [FleetProgram(self.registry), self.house, BankProgram(setup)],
                                  self.port, self.pumps, self.printer, self.clock,
                                  pump_numbers=self.pump_numbers)

    def restart(self) -> None:
        self.journal.close()
        self.saf.close()
        self.open()

    def close(self) -> None:
        self.journal.close()
        self.saf.close()

    def advices(self) -> list[tuple[str, dict[str, str]]]:
        return [(a.kind.value, iso.decode(a.raw)) for a in self.saf.pending()]

    def path(self, sale_id: str) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.journal.events(sale_id)))


@pytest.fixture
def env_factory(tmp_path: Path) -> Any:
    made: list[Env] = []

    def make(kind: str, **kw: Any) -> Env:
        env = Env(tmp_path, kind, **kw)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


# == (b) every program's sale through the machine ========================================================
FILL = ("lift", ("flow", 2000), "hang_up")
FULL = ("created", "authorizing", "approved", "pump_authorized", "completed")
REFUSED = ("created", "authorizing", "declined")


@dataclass(frozen=True)
class Sale:
    id: str
    kind: str
    path: tuple[str, ...] = ()                 # states journaled, in order; () = no sale row at all
    card: Callable[[], CardIn] | None = None
    host: Any = None
    script: dict[str, list[Any]] = field(default_factory=dict)
    events: tuple[Any, ...] = ()
    fail: tuple[str, BaseException] | None = None
    reason: DeclineReason | None = None
    volume: int = 0
    charged: int = 0
    flags: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()               # bank: (kind, field 39 or field 95) of the one advice queued
    screen: Screen | None = None
    released: int = 0                          # pump authorize commands that went out
    preset: Preset | None = None               # journaled when the driver chose one below the grant
    nozzles: tuple[int, ...] | None = None     # the nozzles the pump was released to, when checked
    pumps: tuple[int, ...] = (1,)              # the terminal's pumps (more than one: the driver picks)


def amount(cl: int, price: int = 1659) -> int:
    return (cl * price + 500) // 1000


UNRELEASED = ("created", "authorizing", "approved", "completed")


def litres_ml(advice: dict[str, str]) -> int:
    """Millilitres of a 0220's fuel line (field 63: product 3, "L", millilitres 9, price 9, amount 12)."""
    return int(advice["63"][4:13])


SALES = [
    # -- fleet ---------------------------------------------------------------------------------------------
    Sale("fleet-fill", "fleet", FULL, events=FILL, volume=2000, charged=amount(2000), released=1),
    Sale("fleet-expired-card", "fleet", card=lambda: ChipCard(FleetChip("200131"), b"\x3b"),
         screen=Screen.DECLINED),
    Sale("fleet-registry-offline", "fleet", host=None, screen=Screen.HOST_UNAVAILABLE),
    Sale("fleet-pin-cancelled", "fleet", script={"pin": [CANCEL]}, screen=Screen.REMOVE_CARD),
    Sale("fleet-registry-declines", "fleet", REFUSED, reason=DeclineReason.LIMIT_EXHAUSTED,
         host=AuthAnswer.declined("req-1", DeclineReason.LIMIT_EXHAUSTED)),
    Sale("fleet-registry-unreachable", "fleet", REFUSED, reason=DeclineReason.HOST_UNAVAILABLE,
         host=HostUnavailable("no answer"), screen=Screen.HOST_UNAVAILABLE),
    Sale("fleet-totals-unreadable", "fleet", ("created", "authorizing", "approved", "completed"), events=FILL,
         fail=("totals", PumpLinkError("no answer")), screen=Screen.PUMP_ERROR),
    Sale("fleet-nozzle-without-totals", "fleet", ("created", "authorizing", "approved", "completed"),
         events=FILL, fail=("totals", MessageError("nozzle must be 1..8 for total counters")),
         screen=Screen.PUMP_ERROR),
    Sale("fleet-pump-refuses-authorize", "fleet", FULL, events=FILL,
         fail=("authorize", PumpStateError("busy")), screen=Screen.PUMP_ERROR),
    Sale("fleet-authorize-reply-lost", "fleet", FULL, events=FILL, fail=("authorized", PumpLinkError("lost")),
         released=1, screen=Screen.PUMP_ERROR),
    Sale("fleet-nozzle-never-lifted", "fleet", FULL, released=1),
    Sale("fleet-pump-runs-past-preset", "fleet", FULL, events=("lift", ("over", 4100), "hang_up"),
         volume=4100, charged=amount(4100), flags=("over_authorized",), released=1),
    Sale("fleet-pump-restarts-mid-fill", "fleet", FULL, events=("lift", ("flow", 1500), "restart"),
         volume=1500, charged=amount(1500), flags=("settled_from_totals",), released=1),
    # the driver's limits: litres below the grant; the prompt left (CANCEL or its timeout) closes the hold
    Sale("fleet-preset-litres", "fleet", FULL, script={"preset": [Preset.volume(1500)]},
         events=("lift", ("flow", 3000)), volume=1500, charged=amount(1500), released=1,
         preset=Preset.volume(1500), nozzles=(1,)),
    Sale("fleet-preset-cancelled", "fleet", UNRELEASED, script={"preset": [CANCEL]},
         screen=Screen.REMOVE_CARD),
    Sale("fleet-pump-choice-timed-out", "fleet", script={"pump": [CANCEL]}, pumps=(1, 2),
         screen=Screen.REMOVE_CARD),
    Sale("fleet-pump-chosen", "fleet", FULL, script={"pump": [1]}, pumps=(1, 2), events=FILL, volume=2000,
         charged=amount(2000), released=1),
    # -- house ---------------------------------------------------------------------------------------------
    Sale("house-fill-to-preset", "house", FULL, events=("lift", ("flow", 1500)), volume=1000,
         charged=amount(1000), released=1),
    Sale("house-hang-up-early", "house", FULL, events=("lift", ("flow", 400), "hang_up"), volume=400,
         charged=amount(400), released=1),
    Sale("house-vehicle-cancelled", "house", ("created", "declined"), script={"vehicle": [CANCEL]},
         reason=DeclineReason.CANCELLED, screen=Screen.REMOVE_CARD),
    Sale("house-vehicle-barred", "house", REFUSED, script={"vehicle": ["0000"]},
         reason=DeclineReason.UNKNOWN_CARD),
    Sale("house-pump-refuses-authorize", "house", FULL, events=FILL, fail=("authorize", PumpStateError("x")),
         screen=Screen.PUMP_ERROR),
    # -- bank (swipe, online PIN) ----------------------------------------------------------------------------
    Sale("bank-fill", "bank", FULL, events=FILL, volume=2000, charged=amount(2000), released=1,
         advice=("completion", f"{amount(2000):012d}")),
    Sale("bank-partial-approval", "bank", FULL, host="10:6000", events=("lift", ("flow", 9000)),
         volume=6000 * 1000 // 1659, charged=amount(6000 * 1000 // 1659), released=1,
         advice=("completion", f"{amount(6000 * 1000 // 1659):012d}"), screen=Screen.APPROVED_UP_TO),
    Sale("bank-declined-51", "bank", REFUSED, host="51", reason=DeclineReason.INSUFFICIENT_FUNDS),
    Sale("bank-host-unreachable", "bank", REFUSED, host=HostUnreachable("refused"),
         reason=DeclineReason.HOST_UNAVAILABLE),
    Sale("bank-host-timeout", "bank", REFUSED, host=HostUnavailable("timeout"),
         reason=DeclineReason.HOST_TIMEOUT, advice=("reversal", "68")),
    Sale("bank-nothing-dispensed", "bank", FULL, released=1, advice=("reversal", "17")),
    Sale("bank-totals-unreadable", "bank", ("created", "authorizing", "approved", "completed"),
         fail=("totals", PumpLinkError("no answer")), advice=("reversal", "17")),
    Sale("bank-pin-cancelled", "bank", script={"dukpt": [CANCEL]}, screen=Screen.REMOVE_CARD),
    # the driver's limits: the grant allows both nozzles; a product narrows them, a preset lowers the amount
    Sale("bank-product-chosen", "bank", FULL, script={"product": [1]}, events=(("lift", 2), ("flow", 2000),
         "hang_up"), volume=2000, charged=amount(2000, 1789), released=1, nozzles=(2,),
         advice=("completion", f"{amount(2000, 1789):012d}")),
    Sale("bank-any-product", "bank", FULL, script={"product": [None]}, events=FILL, volume=2000,
         charged=amount(2000), released=1, nozzles=(1, 2), advice=("completion", f"{amount(2000):012d}")),
    Sale("bank-preset-amount", "bank", FULL, script={"preset": [Preset.amount(2000)]},
         events=("lift", ("flow", 5000)), volume=2000 * 1000 // 1659, charged=amount(2000 * 1000 // 1659),
         released=1, preset=Preset.amount(2000),
         advice=("completion", f"{amount(2000 * 1000 // 1659):012d}")),
    Sale("bank-pump-choice-timed-out", "bank", script={"pump": [CANCEL]}, pumps=(1, 2),
         screen=Screen.REMOVE_CARD),
    Sale("bank-product-cancelled", "bank", UNRELEASED, script={"product": [CANCEL]},
         advice=("reversal", "17"), screen=Screen.REMOVE_CARD),
    Sale("bank-preset-timed-out", "bank", UNRELEASED, script={"preset": [CANCEL]},
         advice=("reversal", "17"), screen=Screen.REMOVE_CARD),
    Sale("bank-chip-card-swiped", "bank", card=lambda: swipe("201"), screen=Screen.INSERT_CHIP),
    Sale("bank-expired-card", "bank", card=lambda: swipe(expiry="2001"), screen=Screen.DECLINED),
]


@pytest.mark.parametrize("row", SALES, ids=lambda r: r.id)
def test_sale(env_factory: Any, row: Sale) -> None:
    env: Env = env_factory(row.kind, card=row.card() if row.card else None, host=row.host, script=row.script,
                           events=row.events, pumps=row.pumps)
    if row.id == "fleet-registry-offline":
        env.registry.online = False
    if row.fail is not None:
        env.pumps.fail(*row.fail)
    sale_id = env.runner.serve(env.card)

    assert all(env.port.script[kind] == [] for kind in row.script)      # every scripted answer was asked for
    if row.screen is not None:
        assert row.screen in env.port.shown()
    assert len(env.pumps.authorized) == row.released and not env.pumps.released()
    if row.nozzles is not None:
        assert env.pumps.authorized[0][1] == row.nozzles
    if not row.path:
        assert sale_id is None and env.journal.all_sales() == [] and env.saf.held_sales() == []
        assert env.registry.asked == [] and env.acquirer.requests == []
        return
    assert sale_id is not None
    rec = env.journal.get(sale_id)
    assert (rec.program, tuple(env.path(sale_id)), rec.reason) == (row.kind, row.path, row.reason)
    assert not rec.recovered and not env.runner.needs_recovery()
    assert env.saf.held_sales() == []                      # no card context outlives its sale
    advices = env.advices()
    assert [(kind, doc["39"] if kind == "reversal" else doc["4"]) for kind, doc in advices] == (
        [row.advice] if row.advice else [])
    if rec.state is S.DECLINED:
        assert env.printer.papers == [] and env.ledger == {}
        return
    assert rec.state is S.COMPLETED
    assert (rec.volume_cl, rec.amount_cents, rec.charged_cents) == (row.volume, row.charged, row.charged)
    assert set(row.flags) <= set(rec.flags)
    if row.preset is not None:
        assert rec.preset == row.preset
    assert len(env.printer.papers) == (1 if row.volume else 0) and env.printer.duplicates() == (
        [False] if row.volume else [])
    assert [r.id for r in env.journal.unsynced()] == [sale_id]    # the sale reaches the registry once
    payload = sale_payload(rec, "T-0001", "ST-1")
    assert payload["kind"] == row.kind and payload["volume_cl"] == row.volume
    assert payload["auth_id"] == (env.registry.requests[0] if row.kind == "fleet" else None)
    if row.kind == "fleet":
        env.registry.book(payload)
        assert env.registry.holds == set()
    if row.kind == "house":
        assert env.ledger == {sale_id: row.charged}
    if row.kind == "bank":
        assert rec.preset == (row.preset or Preset.amount(6000 if row.host == "10:6000" else PREAUTH))
        assert (rec.reference, env.acquirer.requests[0]["t"]) == ("A1B2C3", "0100")
        assert "35" in env.acquirer.requests[0] and "52" in env.acquirer.requests[0]    # track 2, PIN block
        # the PIN block the default dialect carries: ISO 9564 format 0, 8 bytes in the 1987 b64 field 52
        assert env.port.pin_formats == ["iso0-tdea2"] and len(env.acquirer.requests[0]["52"]) == 16
        for kind, doc in advices:
            assert "35" not in doc
            if kind == "reversal":      # the approval given back whole
                assert doc["4"] == f"{rec.preset.value if rec.preset else 0:012d}"
            else:                       # what was charged, and the litres the journal settled
                assert doc["4"] == f"{rec.charged_cents:012d}" and litres_ml(doc) == 10 * (rec.volume_cl or 0)


def test_the_drivers_preset_is_journaled_before_the_pump_is_released(env_factory: Any) -> None:
    env: Env = env_factory("bank", script={"product": [1], "preset": [Preset.amount(3000)]})
    sale_id = env.runner.serve(env.card)
    assert sale_id is not None
    events = env.journal.events(sale_id)
    states = [s for s, _ in events]
    chosen = next(i for i, (s, d) in enumerate(events) if s == "approved" and d.get("preset_value") == 3000)
    assert states.index("approved") < chosen < states.index("pump_authorized")
    assert env.pumps.authorized == [(1, (2,), None, 3000)]
    assert env.port.products_offered == [[("Diesel", 1659), ("Super 95", 1789)]]
    assert env.port.preset_limits == [Preset.amount(PREAUTH)]


@pytest.mark.parametrize(("tries", "data"), [(2, {"pin_tries_left": 2}), (None, {})])
def test_a_wrong_fleet_pin_declines_with_the_tries_the_registry_leaves(
        env_factory: Any, tries: int | None, data: dict[str, int]) -> None:
    """The registry's count (AUTH_RESPONSE pin_tries_left) goes with the decline, journaled; an older
    registry's answer has none."""
    host = AuthAnswer.declined("req-1", DeclineReason.WRONG_PIN, pin_tries_left=tries)
    env: Env = env_factory("fleet", host=host)
    sale_id = env.runner.serve(env.card)
    assert sale_id is not None
    rec = env.journal.get(sale_id)
    assert (rec.state, rec.reason) == (S.DECLINED, DeclineReason.WRONG_PIN)
    assert {k: v for k, v in rec.data.items() if k == "pin_tries_left"} == data
    shown = {"reason": DeclineReason.WRONG_PIN, **({"tries": tries} if tries is not None else {})}
    assert env.port.screens[-1] == (Screen.DECLINED, shown)


@pytest.mark.parametrize(("events", "hang_up"), [(("lift", ("flow", 5000)), True), (FILL, False)])
def test_hang_up_is_asked_when_the_preset_stopped_the_pump_with_the_nozzle_out(
        env_factory: Any, events: tuple[Any, ...], hang_up: bool) -> None:
    env: Env = env_factory("fleet", events=events)
    env.runner.serve(env.card)
    shown = env.port.shown()
    assert (Screen.HANG_UP in shown) is hang_up
    assert shown.index(Screen.PRINTING) < shown.index(Screen.THANK_YOU)      # printing while it prints
    filling = [f for s, f in env.port.screens if s is Screen.FILLING]       # typed figures, never strings
    assert filling and filling[-1]["price_milli"] == 1659 and filling[-1]["currency"] == "EUR"
    assert all(isinstance(f["volume_cl"], int) and isinstance(f["amount_cents"], int) for f in filling)
    assert dict(env.port.screens)[Screen.LIFT_NOZZLE] == {"pump": 1, "volume_cl": 4000}
    assert dict(env.port.screens)[Screen.THANK_YOU] == {"volume_cl": 4000 if hang_up else 2000,
                                                       "amount_cents": amount(4000 if hang_up else 2000),
                                                       "currency": "EUR"}


def test_a_crash_after_the_drivers_choice_gives_the_hold_back_on_restart(env_factory: Any) -> None:
    env: Env = env_factory("bank", script={"preset": [Preset.amount(3000)]})
    env.pumps.fail("totals", Crash())           # power lost after the choice, before the pump is released
    with pytest.raises(Crash):
        env.runner.serve(env.card)
    env.restart()
    [sale_id] = env.runner.recover()
    rec = env.journal.get(sale_id)
    assert (rec.state, rec.preset, rec.volume_cl) == (S.COMPLETED, Preset.amount(3000), 0)
    given_back = [(kind, doc["39"], doc["4"]) for kind, doc in env.advices()]
    assert given_back == [("reversal", "17", f"{PREAUTH:012d}")]     # the whole approval, not the preset
    assert env.pumps.authorized == []


def test_a_pump_that_goes_offline_mid_fill_leaves_the_sale_open_until_it_answers(env_factory: Any) -> None:
    env: Env = env_factory("fleet", events=("lift", ("flow", 1200), "offline"))
    sale_id = env.runner.serve(env.card)
    assert sale_id is not None
    rec = env.journal.get(sale_id)
    assert rec.state is S.PUMP_AUTHORIZED and "attendant_check" in rec.flags and env.runner.needs_recovery()
    assert Screen.PUMP_ERROR in env.port.shown()
    # the only pump still holds an unsettled sale: the next card is refused, nothing journaled
    assert env.runner.serve(ChipCard(FleetChip(), b"\x3b")) is None
    assert Screen.PUMP_BUSY in env.port.shown() and len(env.journal.all_sales()) == 1
    assert env.runner.recover(pump_wait=0.0) == [sale_id]       # still offline: stays open
    assert env.journal.get(sale_id).state is S.PUMP_AUTHORIZED
    env.pumps.customer("online", "hang_up")
    env.runner.recover(pump_wait=1.0)
    rec = env.journal.get(sale_id)
    assert (rec.state, rec.volume_cl, rec.recovered) == (S.COMPLETED, 1200, True)
    assert len(env.printer.papers) == 1 and not env.runner.needs_recovery()


# == (c) crash points and recovery ========================================================================
@dataclass(frozen=True)
class CrashAt:
    id: str
    kinds: tuple[str, ...]
    at: tuple[str, str]            # ("journal", "before:approved"), ("pump", "authorize"), ("printer", ""),
    #                                ("host", "") (the bank's 0100 left, no answer), ("host-timeout", "...")
    state: SaleState | None        # after recovery; None: no sale row at all
    reason: DeclineReason | None = None
    volume: int = 0
    papers: tuple[bool, ...] = ()  # duplicate flag of each receipt printed, before and after the crash
    advice: tuple[str, str] | None = None   # bank: the one advice queued, (kind, field 39 or 95)
    declines: bool = False         # the registry (fleet) or the house rules (barred vehicle) say no
    host: str | None = None        # the bank's 0110 ("10:6000": a partial approval)
    amount4: int | None = None     # bank: field 4 of the advice (what was approved, or requested)


ALL = ("fleet", "house", "bank")
CRASH_FILL = ("lift", ("flow", 800), "hang_up")
V = 800
DONE = f"{amount(V):012d}"


CRASHES = [
    CrashAt("before-created", ALL, ("journal", "before:created"), None),
    CrashAt("created-not-asked", ALL, ("journal", "after:created"), S.DECLINED, DeclineReason.INTERRUPTED),
    CrashAt("authorizing-host-not-asked", ("house",), ("journal", "after:authorizing"), S.DECLINED,
            DeclineReason.INTERRUPTED),
    # fleet: the registry may hold litres under the journaled request id; recovery closes that hold with a
    # sale of nothing (issue 10, window 1)
    CrashAt("authorizing-host-not-asked", ("fleet",), ("journal", "after:authorizing"), S.COMPLETED),
    CrashAt("authorizing-host-not-asked", ("bank",), ("journal", "after:authorizing"), S.DECLINED,
            DeclineReason.HOST_TIMEOUT, advice=("reversal", "68")),
    CrashAt("context-held-authorizing-not-journaled", ALL, ("journal", "before:authorizing"), S.DECLINED,
            DeclineReason.INTERRUPTED),
    CrashAt("0100-sent-no-0110", ("bank",), ("host", ""), S.DECLINED, DeclineReason.HOST_TIMEOUT,
            advice=("reversal", "68")),
    CrashAt("host-declined-not-journaled", ("house",), ("journal", "before:declined"), S.DECLINED,
            DeclineReason.INTERRUPTED, declines=True),
    CrashAt("host-declined-not-journaled", ("fleet",), ("journal", "before:declined"), S.COMPLETED,
            declines=True),
    CrashAt("reversal-queued-decline-not-journaled", ("bank",), ("host-timeout", "before:declined"),
            S.DECLINED, DeclineReason.INTERRUPTED, advice=("reversal", "68")),
    CrashAt("host-approved-not-journaled", ("house",), ("journal", "before:approved"), S.DECLINED,
            DeclineReason.INTERRUPTED),
    CrashAt("host-approved-not-journaled", ("fleet",), ("journal", "before:approved"), S.COMPLETED),
    CrashAt("host-approved-not-journaled", ("bank",), ("journal", "before:approved"), S.DECLINED,
            DeclineReason.HOST_TIMEOUT, advice=("reversal", "68")),
    CrashAt("partial-approval-not-journaled", ("bank",), ("journal", "before:approved"), S.DECLINED,
            DeclineReason.HOST_TIMEOUT, advice=("reversal", "68"), host="10:6000", amount4=6000),
    CrashAt("approved-pump-not-released", ALL, ("journal", "after:approved"), S.COMPLETED,
            advice=("reversal", "17")),
    CrashAt("release-not-journaled", ALL, ("journal", "before:pump_authorized"), S.COMPLETED,
            advice=("reversal", "17")),
    CrashAt("release-journaled-pump-not-told", ALL, ("pump", "authorize"), S.COMPLETED,
            advice=("reversal", "17")),
    CrashAt("pump-released-not-followed", ALL, ("pump", "authorized"), S.COMPLETED, volume=V, papers=(False,),
            advice=("completion", DONE)),
    CrashAt("follower-died-mid-fill", ALL, ("pump", "filling"), S.COMPLETED, volume=V, papers=(False,),
            advice=("completion", DONE)),
    CrashAt("pump-read-figures-not-journaled", ALL, ("journal", "before:figures"), S.COMPLETED, volume=V,
            papers=(False,), advice=("completion", DONE)),
    CrashAt("figures-journaled-not-booked", ALL, ("journal", "after:figures"), S.COMPLETED, volume=V,
            papers=(False,), advice=("completion", DONE)),
    CrashAt("settled-not-journaled", ALL, ("journal", "before:completed"), S.COMPLETED, volume=V,
            papers=(False,), advice=("completion", DONE)),
    CrashAt("completed-receipt-not-begun", ALL, ("journal", "after:completed"), S.COMPLETED, volume=V,
            papers=(False,), advice=("completion", DONE)),
    CrashAt("receipt-begun-not-printed", ALL, ("journal", "after:receipt_started"), S.COMPLETED, volume=V,
            papers=(True,), advice=("completion", DONE)),
    CrashAt("printer-lost-power", ALL, ("printer", ""), S.COMPLETED, volume=V, papers=(True,),
            advice=("completion", DONE)),
    CrashAt("printed-not-marked", ALL, ("journal", "before:receipt_printed"), S.COMPLETED, volume=V,
            papers=(False, True), advice=("completion", DONE)),
    CrashAt("all-done", ALL, ("journal", "after:receipt_printed"), S.COMPLETED, volume=V, papers=(False,),
            advice=("completion", DONE)),
]
FINISHED_BEFORE_THE_CRASH = {"completed-receipt-not-begun", "receipt-begun-not-printed", "printer-lost-power",
                             "printed-not-marked", "all-done"}
CRASH_ROWS = [pytest.param(kind, row, id=f"{kind}-{row.id}") for row in CRASHES for kind in row.kinds]


@pytest.mark.parametrize(("kind", "row"), CRASH_ROWS)
def test_crash_and_recover(env_factory: Any, kind: str, row: CrashAt) -> None:
    where, what = row.at
    host: Any = {"host": Crash("0100 sent"), "host-timeout": HostUnavailable("timeout")}.get(where)
    if row.declines and kind == "fleet":
        host = AuthAnswer.declined("req-1", DeclineReason.LIMIT_EXHAUSTED)
    script = {"vehicle": ["0000"]} if row.declines and kind == "house" else None
    host = row.host or host
    env: Env = env_factory(kind, events=CRASH_FILL, host=host if kind != "house" else None, script=script)
    if where in ("journal", "host-timeout"):
        when, _, state = what.partition(":")
        env.journal.crash = (when, state)
    elif where == "pump":
        env.pumps.fail(what, Crash(what))
    elif where == "printer":
        env.printer.fail_with = Crash("printer")
    with pytest.raises(Crash):
        env.runner.serve(env.card)

    env.restart()                                # a new runner over the same journal and SAF files
    env.runner.recover(pump_wait=1.0)
    env.runner.recover(pump_wait=1.0)            # a second restart changes nothing

    sales = env.journal.all_sales()
    if row.state is None:
        assert sales == [] and env.saf.held_sales() == [] and env.advices() == []
        return
    assert len(sales) == 1
    rec = sales[0]
    assert (rec.state, rec.reason, rec.volume_cl or 0) == (row.state, row.reason, row.volume)
    assert rec.recovered is (row.id not in FINISHED_BEFORE_THE_CRASH)
    assert not env.runner.needs_recovery() and env.saf.held_sales() == []
    assert not env.pumps.released()                               # no pump left released
    assert len(env.pumps.authorized) <= 1                          # never released twice
    assert tuple(env.printer.duplicates()) == row.papers
    if row.papers:
        assert env.printer.papers[-1][0].text == "Test Station" and env.journal.get(rec.id).receipt_printed
    advices = env.advices()
    if kind == "bank":
        assert [(k, doc["39"] if k == "reversal" else doc["4"]) for k, doc in advices] == (
            [row.advice] if row.advice else [])
        if row.amount4 is not None:
            assert advices[0][1]["4"] == f"{row.amount4:012d}"
    else:
        assert advices == []
    if rec.state is S.COMPLETED:
        assert rec.charged_cents == (amount(V) if row.volume else 0)
        assert [r.id for r in env.journal.unsynced()] == [rec.id]     # booked centrally once
        payload = sale_payload(rec, "T-0001", "ST-1")
        assert payload["auth_id"] == (rec.data["registry_request"] if kind == "fleet" else None)
        assert env.registry.requests in ([], [payload["auth_id"]])    # the hold the registry keyed by it
        env.registry.book(payload)
        assert payload["volume_cl"] == row.volume
        if kind == "house":
            assert env.ledger == {rec.id: rec.charged_cents}
    else:
        assert env.ledger == {} and env.journal.unsynced() == []
    assert env.registry.holds == set()                            # no litres left held


@pytest.mark.parametrize(("first", "second", "kind", "advice"), [
    pytest.param(("before", "approved"), ("before", "declined"), "reversal", "68",
                 id="reversal-queued-then-crashed"),
    pytest.param(("before", "completed"), ("before", "completed"), "completion", DONE,
                 id="completion-queued-then-crashed-again"),
    pytest.param(("after", "pump_authorized"), ("before", "completed"), "reversal", "17",
                 id="never-released-then-crashed-settling"),
])
def test_a_crash_during_recovery_still_counts_money_once(
        env_factory: Any, first: tuple[str, str], second: tuple[str, str], kind: str, advice: str) -> None:
    env: Env = env_factory("bank", events=CRASH_FILL)
    env.journal.crash = first
    with pytest.raises(Crash):
        env.runner.serve(env.card)
    env.restart()
    env.journal.crash = second
    with pytest.raises(Crash):
        env.runner.recover(pump_wait=1.0)
    env.restart()
    env.runner.recover(pump_wait=1.0)
    advices = env.advices()
    assert [(k, doc["39"] if k == "reversal" else doc["4"]) for k, doc in advices] == [(kind, advice)]
    (rec,) = env.journal.all_sales()
    assert rec.state in (S.DECLINED, S.COMPLETED) and rec.recovered and not env.runner.needs_recovery()
    assert env.saf.held_sales() == [] and len(env.printer.papers) == (1 if rec.volume_cl else 0)
