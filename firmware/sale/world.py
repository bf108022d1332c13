"""What the sale machine works with: the ports it is given by the terminal process (or by a test).

Nothing here opens a device; the terminal's composition root builds one SaleWorld and passes it down.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.pump import PumpController
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import Adjunct, Cardholder, CardProgram
from firmware.sale.journal import Journal
from firmware.station import Station

__all__ = ["Clock", "Display", "Printer", "SaleTimeouts", "SaleWorld", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def now(self) -> dt.datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        import time
        return time.monotonic()

    def time(self) -> float:
        import time
        return time.time()

    def now(self) -> dt.datetime:
        return dt.datetime.now().astimezone()


class Display(Protocol):
    """The screen as pump followers use it: they keep off it while a cardholder is being served."""
    def status(self, screen: Screen, **fields: Any) -> None: ...


class Printer(Protocol):
    def print_lines(self, lines: Sequence[ReceiptLine]) -> None: ...


@dataclass(frozen=True)
class SaleTimeouts:
    nozzle_lift: float = 120.0
    filling: float = 900.0
    pump_offline: float = 120.0    # how long a sale waits for a pump that stopped answering
    rider: float = 60.0            # a loyalty card or voucher read waits this long for the payment card


@dataclass
class SaleWorld:
    terminal: str
    station_id: str
    pump_numbers: tuple[int, ...]
    programs: Sequence[CardProgram]
    port: Cardholder
    display: Display
    pumps: PumpController
    printer: Printer
    journal: Journal
    station: Callable[[], Station]          # the configuration now in force
    token_key: bytes                        # keyed hash of card numbers
    spawn: Callable[[str, Callable[[], None]], None]   # run a pump follower on its own (name, work)
    adjuncts: Sequence[Adjunct] = ()
    timeouts: SaleTimeouts = field(default_factory=SaleTimeouts)
    clock: Clock = field(default_factory=SystemClock)
    on_completed: Callable[[], None] = lambda: None    # a sale is ready to sync

    def program(self, name: str) -> CardProgram | None:
        return next((p for p in self.programs if p.name == name), None)
