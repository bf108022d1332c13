"""Fakes for the sale machine's ports, shared by tests/test_sale_machine.py and tests/test_house_card.py.

A scripted cardholder, a scripted pump line, a fake clock, a list printer, and a journal that can be made to
"lose power" (raise Crash) just before or just after one of its writes. Nothing here sleeps or opens a device.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from contracts.errors import PumpStateError, PumpTimeout, SaleCancelled
from contracts.pump import PumpState, PumpStatus, PumpTotals
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.programs.base import Adjunct, CardProgram, Question
from firmware.sale.journal import Journal
from firmware.sale.record import Preset
from firmware.sale.runner import SaleRunner
from firmware.sale.world import SaleTimeouts, SaleWorld
from firmware.station import NozzlePrice, Station
from firmware.terminal.crashpoint import CrashPointJournal

__all__ = ["CANCEL", "Crash", "CrashingJournal", "FakeClock", "FakePumps", "ListPrinter",
           "ScriptedCardholder", "make_runner", "station"]

CANCEL = "CANCEL"      # a script answer: the cardholder pressed CANCEL (or the prompt timed out)
DIESEL, SUPER = 1659, 1789


class Crash(BaseException):
    """The terminal loses power here: nothing after this point runs (not an Exception: nobody catches it)."""


def station() -> Station:
    return Station("Test Station", "EUR", (NozzlePrice(1, 1, "diesel", "Diesel", DIESEL),
                                           NozzlePrice(1, 2, "petrol95", "Super 95", SUPER)))


class FakeClock:
    """firmware.sale.world.Clock; time moves only when a pump wait times out (advance())."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.t, self.mono = start, 1000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.t, dt.UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds


class ScriptedCardholder:
    """The Cardholder port (and the followers' Display) answering from a script: kind -> answers in order.
    Kinds: pump, choose, pin, dukpt, offline_pin, swipe, and a Question's id for ask(). CANCEL raises
    SaleCancelled; an exception instance is raised."""

    languages = ("en",)

    def __init__(self, **script: Sequence[Any]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.screens: list[tuple[Screen, dict[str, Any]]] = []
        self.asked: list[str] = []
        self.pin_formats: list[str] = []      # the PIN block format of each dukpt_pin_block call
        self.pin_tries: list[int | None] = []   # the tries left each offline_pin call was told
        self.products_offered: list[list[tuple[str, int]]] = []
        self.preset_limits: list[Preset] = []

    def _next(self, kind: str) -> Any:
        self.asked.append(kind)
        answers = self.script.get(kind)
        if not answers:
            raise AssertionError(f"the sale asked the cardholder for {kind!r}, which the script has not")
        answer = answers.pop(0)
        if isinstance(answer, str) and answer == CANCEL:
            raise SaleCancelled(f"{kind} cancelled")
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def show(self, screen: Screen, **fields: Any) -> None:
        self.screens.append((screen, fields))

    def notice(self, screen: Screen, seconds: float, **fields: Any) -> None:
        self.screens.append((screen, fields))

    def status(self, screen: Screen, **fields: Any) -> None:
        self.screens.append((screen, fields))

    def set_language(self, code: str) -> None:
        pass

    def choose_pump(self, free: Sequence[int]) -> int:
        return int(self._next("pump"))

    def choose(self, options: Sequence[str]) -> int:
        return int(self._next("choose"))

    def pin_block(self, pan: str) -> bytes:
        return bytes(self._next("pin"))

    def dukpt_pin_block(self, pan: str, *, fmt: str = "iso0-tdea2") -> tuple[bytes, bytes]:
        self.pin_formats.append(fmt)
        ksn, block = self._next("dukpt")
        return bytes(ksn), bytes(block)

    def offline_pin(self, last_try: bool, tries: int | None = None) -> bytearray:
        self.pin_tries.append(tries)
        return bytearray(self._next("offline_pin"))

    def swipe(self) -> Track2:
        answer: Track2 = self._next("swipe")
        return answer

    def ask(self, question: Question) -> str:
        return str(self._next(question.id))

    def choose_product(self, products: Sequence[tuple[str, int]], currency: str) -> int | None:
        """Script "product": an index or None (any); unscripted: None, as ENTER would."""
        self.products_offered.append(list(products))
        if "product" not in self.script:
            return None
        answer: int | None = self._next("product")
        return answer

    def enter_preset(self, limit: Preset, currency: str) -> Preset:
        """Script "preset": a Preset; unscripted: the limit, as ENTER with nothing would."""
        self.preset_limits.append(limit)
        if "preset" not in self.script:
            return limit
        answer: Preset = self._next("preset")
        return answer

    def shown(self) -> list[Screen]:
        return [s for s, _ in self.screens]


# -- the pump line ----------------------------------------------------------------------------------------
_OPEN = (PumpState.AUTHORIZED, PumpState.FILLING)


@dataclass
class _Pump:
    status: PumpStatus
    totals: dict[int, tuple[int, int]]
    preset_cl: int | None = None
    preset_cents: int | None = None
    allowed: tuple[int, ...] = ()
    before_offline: PumpState | None = None


class FakePumps:
    """contracts.pump.PumpController over scripted pumps. After release the customer's plan plays one event
    per wait_status() that is not yet satisfied: "lift" (nozzle 1), ("lift", n), ("flow", cl) (stops at
    the preset), ("over", cl) (runs past it), "hang_up", "offline", "online", "restart" (power cycle: the
    display is lost, the totals kept). An empty plan times the wait out (the fake clock moves).

    fail(point, exc) raises exc once at a point: "totals", "authorize" (before the pump takes it),
    "authorized" (after), "status", "stop", "filling" (a wait while the pump is filling)."""

    def __init__(self, clock: FakeClock, pumps: Iterable[int] = (1,),
                 prices: Mapping[int, int] | None = None) -> None:
        self.clock = clock
        self.prices = dict(prices or {1: DIESEL, 2: SUPER})
        # each pump shows the figures of an earlier sale: they must never be charged to this one
        self.pumps = {p: _Pump(PumpStatus(p, PumpState.FILLING_COMPLETED, nozzle=1, volume_cl=777,
                                          amount_cents=1289, price_milli=DIESEL, seq=1),
                               {n: (500_000, 829_500) for n in self.prices}) for p in pumps}
        self.plan: dict[int, list[Any]] = {p: [] for p in pumps}
        self.failures: dict[str, BaseException] = {}
        self.authorized: list[tuple[int, tuple[int, ...], int | None, int | None]] = []
        self.stopped: list[int] = []

    # -- test side ----------------------------------------------------------------------------------
    def customer(self, *events: Any, pump: int = 1) -> None:
        self.plan[pump].extend(events)

    def fail(self, point: str, exc: BaseException) -> None:
        self.failures[point] = exc

    def _hit(self, point: str) -> None:
        exc = self.failures.pop(point, None)
        if exc is not None:
            raise exc

    def _set(self, pump: int, **changes: Any) -> None:
        p = self.pumps[pump]
        p.status = replace(p.status, seq=p.status.seq + 1, **changes)

    def _running(self, pump: int) -> tuple[int, int]:
        st = self.pumps[pump].status
        return (st.volume_cl, st.amount_cents) if st.state is PumpState.FILLING else (0, 0)

    def _commit(self, pump: int) -> None:
        p = self.pumps[pump]
        n, (vol, amt) = p.status.nozzle, p.totals.get(p.status.nozzle, (0, 0))
        p.totals[n] = (vol + p.status.volume_cl, amt + p.status.amount_cents)

    def _cap(self, pump: int, nozzle: int) -> int | None:
        p = self.pumps[pump]
        if p.preset_cl is not None:
            return p.preset_cl
        if p.preset_cents is not None:
            return (p.preset_cents * 1000) // self.prices[nozzle]
        return None

    def _play(self, pump: int, event: Any) -> None:
        p = self.pumps[pump]
        st = p.status
        name, arg = (event, 0) if isinstance(event, str) else event
        if name == "lift":
            nozzle = int(arg) or 1
            if st.state is PumpState.AUTHORIZED and (not p.allowed or nozzle in p.allowed):
                self._set(pump, state=PumpState.FILLING, nozzle=nozzle, nozzle_out=True, volume_cl=0,
                          amount_cents=0, price_milli=self.prices[nozzle])
            else:
                self._set(pump, nozzle=nozzle, nozzle_out=True)
        elif name in ("flow", "over") and st.state is PumpState.FILLING:
            volume = st.volume_cl + int(arg)
            cap = self._cap(pump, st.nozzle)
            done = name == "flow" and cap is not None and volume >= cap
            volume = min(volume, cap) if done and cap is not None else volume
            self._set(pump, volume_cl=volume, amount_cents=(volume * st.price_milli + 500) // 1000)
            if done:
                self._commit(pump)
                self._set(pump, state=PumpState.MAX_REACHED)
        elif name == "hang_up":
            if st.state is PumpState.FILLING:
                self._commit(pump)
                self._set(pump, state=PumpState.FILLING_COMPLETED, nozzle_out=False)
            else:
                self._set(pump, nozzle_out=False)
        elif name == "offline":
            p.before_offline = st.state
            self._set(pump, state=PumpState.OFFLINE)
        elif name == "online":
            self._set(pump, state=p.before_offline or PumpState.RESET)
        elif name == "restart":
            if st.state is PumpState.FILLING:
                self._commit(pump)
            self._set(pump, state=PumpState.NOT_PROGRAMMED, volume_cl=0, amount_cents=0, nozzle_out=False)
        elif name not in ("flow", "over"):
            raise AssertionError(f"unknown customer event {event!r}")

    # -- PumpController ------------------------------------------------------------------------------
    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def status(self, pump: int) -> PumpStatus:
        self._hit("status")
        return self.pumps[pump].status

    def wait_status(self, pump: int, predicate: Callable[[PumpStatus], bool], timeout: float) -> PumpStatus:
        while True:
            st = self.pumps[pump].status
            if st.state is PumpState.FILLING:
                self._hit("filling")
            if predicate(st):
                return st
            if not self.plan[pump]:
                self.clock.advance(timeout)
                raise PumpTimeout("no status in time", pump=pump)
            self._play(pump, self.plan[pump].pop(0))

    def set_prices(self, pump: int, prices: Mapping[int, int]) -> None:
        self.prices.update(prices)

    def authorize(self, pump: int, *, nozzles: Sequence[int], volume_cl: int | None = None,
                  amount_cents: int | None = None) -> None:
        self._hit("authorize")
        p = self.pumps[pump]
        if p.status.state in _OPEN or p.status.state is PumpState.OFFLINE:
            raise PumpStateError("pump busy or offline", pump=pump, state=p.status.state.value)
        p.preset_cl, p.preset_cents, p.allowed = volume_cl, amount_cents, tuple(nozzles)
        self._set(pump, state=PumpState.AUTHORIZED)       # the display still shows the last filling
        self.authorized.append((pump, tuple(nozzles), volume_cl, amount_cents))
        self._hit("authorized")

    def stop(self, pump: int) -> None:
        self._hit("stop")
        self.stopped.append(pump)
        st = self.pumps[pump].status
        if st.state is PumpState.FILLING:
            self._commit(pump)
        if st.state in _OPEN:
            self._set(pump, state=PumpState.FILLING_COMPLETED)

    def suspend(self, pump: int) -> None:
        pass

    def resume(self, pump: int) -> None:
        pass

    def reset(self, pump: int) -> None:
        self._set(pump, state=PumpState.RESET)

    def totals(self, pump: int, nozzle: int) -> PumpTotals:
        self._hit("totals")
        vol, amt = self.pumps[pump].totals.get(nozzle, (0, 0))
        if self.pumps[pump].status.nozzle == nozzle:
            run_vol, run_amt = self._running(pump)
            vol, amt = vol + run_vol, amt + run_amt
        return PumpTotals(pump, nozzle, vol, amt)

    def released(self, pump: int = 1) -> bool:
        return self.pumps[pump].status.state in _OPEN


# -- printer and journal ----------------------------------------------------------------------------------
@dataclass
class ListPrinter:
    """firmware.sale.world.Printer keeping each receipt; fail_with raises once (a Crash or a PrinterError)."""
    papers: list[list[ReceiptLine]] = field(default_factory=list)
    fail_with: BaseException | None = None

    def print_lines(self, lines: Sequence[ReceiptLine]) -> None:
        exc, self.fail_with = self.fail_with, None
        if exc is not None:
            raise exc
        self.papers.append(list(lines))

    def texts(self, i: int = -1) -> list[str]:
        return [line.text for line in self.papers[i]]

    def duplicates(self) -> list[bool]:
        return [any("DUPLICATE" in line.text for line in paper) for paper in self.papers]


class CrashingJournal(CrashPointJournal):
    """The terminal's crash-point journal (the same write names); crash = (when, what) raises Crash once,
    "before" or "after" the write that moves a sale to state what (or sets the mark what: receipt_started,
    receipt_printed; or "figures", the settled figures journaled before the program books them)."""

    crash: tuple[str, str] | None = None

    def _maybe(self, when: str, what: str) -> None:
        if self.crash == (when, what):
            self.crash = None
            raise Crash(f"{when} {what}")


def make_runner(journal: Journal, programs: Sequence[CardProgram], port: ScriptedCardholder,
                pumps: Any, printer: Any, clock: FakeClock, *, adjuncts: Sequence[Adjunct] = (),
                pump_numbers: tuple[int, ...] = (1,),
                spawn: Callable[[str, Callable[[], None]], None] = lambda name, work: work(),
                on_completed: Callable[[], None] = lambda: None) -> SaleRunner:
    """A SaleRunner whose pump followers run inline (spawn calls the work at once)."""
    world = SaleWorld(terminal="T-0001", station_id="ST-1", pump_numbers=pump_numbers, programs=programs,
                      port=port, display=port, pumps=pumps, printer=printer, journal=journal,
                      station=station, token_key=b"k" * 32, spawn=spawn, adjuncts=adjuncts,
                      timeouts=SaleTimeouts(nozzle_lift=60.0, filling=600.0, pump_offline=30.0),
                      clock=clock, on_completed=on_completed)
    return SaleRunner(world)

