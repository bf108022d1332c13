"""The card program interface: what the sale machine asks of fleet, bank and every later program.

A program claims a card, authorizes it (asking the cardholder through the port) into a typed Grant or
Decline, settles the dispensed figures, recovers its half-done sales after a restart, and writes its part
of the receipt. Optional: start()/close() for background work, and sells_offline = True for a program
that can sell while the registry is away. Adjuncts (loyalty, vouchers) ride along a payment: they may
lower what is charged and add receipt lines. The sale machine knows none of them by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.errors import ForecourtError
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.emv.apdu import Transmitter
from firmware.sale.record import Preset, SaleRecord
from firmware.station import Station

__all__ = [
    "Adjunct",
    "CardIn",
    "CardProgram",
    "Cardholder",
    "ChipCard",
    "Claim",
    "Contactless",
    "DeadChip",
    "Decline",
    "Declined",
    "Figures",
    "Grant",
    "Preset",
    "Question",
    "ReceiptHead",
    "SaleSteps",
    "Swipe",
    "Transmitter",
    "TypedCode",
]


# -- how a card reaches the terminal -----------------------------------------------------------------
@dataclass(frozen=True)
class ChipCard:
    """A contact card that answered reset; APDUs go through reader."""
    reader: Transmitter
    atr: bytes


@dataclass(frozen=True)
class DeadChip:
    """A card in the reader whose chip gave no answer to reset."""


@dataclass(frozen=True)
class Swipe:
    """A stripe swiped at the idle screen."""
    track: Track2


@dataclass(frozen=True)
class Contactless:
    uid: bytes


@dataclass(frozen=True)
class TypedCode:
    """A code typed on the keypad (a paper voucher's): never in a repr, a log or the journal."""
    code: str = field(repr=False)

    @property
    def hint(self) -> str:
        """The last four digits, as operators see a voucher (registry.vouchers)."""
        return self.code[-4:]


CardIn = ChipCard | DeadChip | Swipe | Contactless | TypedCode


# -- what a program answers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """A program's yes: how much, from which nozzles, and what the sale settles against."""
    preset: Preset
    nozzles: tuple[int, ...]
    reference: str                                   # authorization id or approval code
    data: Mapping[str, Any] = field(default_factory=dict)   # the program's document, journaled
    notice: tuple[Screen, Mapping[str, Any]] | None = None  # shown a moment before "lift nozzle"
    product_asked: bool = False                      # the driver already chose the product: not asked again


@dataclass(frozen=True)
class Decline:
    """A program's no, with one reason code; screen says how the terminal shows it."""
    reason: DeclineReason
    screen: Screen = Screen.DECLINED
    data: Mapping[str, Any] = field(default_factory=dict)


class Declined(ForecourtError):
    """Raised inside a sale step to end the sale with a Decline (pump none free, cancelled...)."""

    def __init__(self, decline: Decline) -> None:
        super().__init__("sale declined", reason=decline.reason.value)
        self.decline = decline


@dataclass(frozen=True)
class Claim:
    """A program took the card: claim is the program's own view of it (never logged: it may hold a PAN)."""
    program: CardProgram
    card: Any = field(repr=False)


@dataclass(frozen=True)
class Figures:
    """What one sale dispensed, from the pump's figures and totalizers."""
    nozzle: int
    product: str | None
    volume_cl: int
    amount_cents: int
    price_milli: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiptHead:
    """Receipt fields common to every program (station, pump, product, totals)."""
    station_name: str
    station: str
    terminal: str
    sale_id: str
    when: dt.datetime
    pump: int
    product: str
    volume_cl: int
    price_milli: int
    amount_cents: int
    card_masked: str
    currency: str
    copy: bool

    def fields(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Question:
    """A program's question to the cardholder: digits only, up to max_len. id names its text in
    ui.screens.QUESTION_TEXTS (odometer, vehicle, driver_id)."""
    id: str
    max_len: int = 8
    min_len: int = 1


# -- the ports a program talks through ---------------------------------------------------------------
class Cardholder(Protocol):
    """Everything the terminal asks the person at the pump. Each call has its timeout and the CANCEL
    key; both raise contracts.errors.SaleCancelled."""

    @property
    def languages(self) -> tuple[str, ...]: ...
    def show(self, screen: Screen, **fields: Any) -> None: ...
    def notice(self, screen: Screen, seconds: float, **fields: Any) -> None: ...
    def set_language(self, code: str) -> None: ...
    def choose_pump(self, free: Sequence[int]) -> int: ...
    def choose(self, options: Sequence[str]) -> int: ...
    def pin_block(self, pan: str) -> bytes: ...
    # fmt: the PIN block format of contracts.iso8583_dialect (format 0 under 2TDEA unless told otherwise)
    def dukpt_pin_block(self, pan: str, *, fmt: str = ...) -> tuple[bytes, bytes]: ...
    # tries: PIN tries left when known (EMV 9F17), shown on the PIN screen
    def offline_pin(self, last_try: bool, tries: int | None = None) -> bytearray: ...
    def swipe(self) -> Track2: ...
    def ask(self, question: Question) -> str: ...
    # products: (name, unit price); the index picked, or None: any of them (the driver lifts one)
    def choose_product(self, products: Sequence[tuple[str, int]], currency: str) -> int | None: ...
    # an amount or litres (limit's kind) up to limit; ENTER with nothing keeps limit
    def enter_preset(self, limit: Preset, currency: str) -> Preset: ...


class SaleSteps(Protocol):
    """What the sale machine offers a program while it authorizes: the port, the clock, pump choice and
    the journal steps (each written before the program acts on it)."""

    port: Cardholder
    now: Callable[[], dt.datetime]
    sale_id: str | None              # set by begin()

    def station(self) -> Station:
        """The station's configuration in force: prices, products, nozzles, currency."""
        ...

    def choose_pump(self) -> int:
        """A free, priced pump the cardholder picked; raises Declined or SaleCancelled."""
        ...

    def begin(self, pump: int, pan: str, *, masked: str | None = None) -> str:
        """Journal a new sale (state created) for this card; returns its id. masked: the card as journaled
        when not mask_number(pan) (a voucher: its hint only)."""
        ...

    def authorizing(self, data: Mapping[str, Any] | None = None) -> None:
        """Journal that the host is about to be asked (state authorizing), with the program's data."""
        ...


class CardProgram(Protocol):
    name: str

    def claim(self, card: CardIn) -> Claim | Decline | None:
        """Take the card (Claim), refuse it outright (Decline, nothing journaled) or pass (None)."""
        ...

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline: ...

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        """Book what was charged (idempotent: may run again after a crash); returns flags to add."""
        ...

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        """A sale of this program found created or authorizing after a restart: undo what may be held
        (Decline), or name the hold the host may have granted (Grant): the sale machine then completes
        the sale with nothing dispensed, and settling that closes the hold."""
        ...

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]: ...


class Adjunct(Protocol):
    """A card or code that rides along a payment (loyalty, voucher): it may lower what is charged and
    adds its lines to the receipt. What it earns is booked centrally from the synced sale, once by its id.
    """
    name: str

    def claim(self, card: CardIn) -> Mapping[str, Any] | None:
        """The adjunct's document for this card (journaled with the next sale), or None: not its card."""
        ...

    def discount(self, doc: Mapping[str, Any], figures: Figures) -> int:
        """Cents taken off what the payment program charges."""
        ...

    # optional (an adjunct without them journals its document as claimed and shows no fields):
    def bind(self, doc: Mapping[str, Any], sale_id: str) -> Mapping[str, Any]:
        """The document the journal keeps once the payment's sale begins (a card number sealed to it)."""
        ...

    def shown(self, doc: Mapping[str, Any]) -> Mapping[str, Any]:
        """Fields of the "card read" screen (a loyalty balance)."""
        ...

    def thanks(self, doc: Mapping[str, Any], sale: SaleRecord) -> Mapping[str, Any]:
        """Fields of the "thank you" screen after the sale (the points it earns)."""
        ...

    def receipt(self, doc: Mapping[str, Any], sale: SaleRecord) -> list[ReceiptLine]: ...
