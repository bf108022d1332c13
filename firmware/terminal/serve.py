"""The terminal's loop: keep the pumps priced, show the idle screen, hand each card (inserted or swiped)
to the sale runner, and retry what a pump outage or a failed sale left open."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.errors import CardError, CardRemoved, PumpError, SaleCancelled
from contracts.pump import PumpController, PumpState
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.hostlink import HostLink
from firmware.programs.base import CardIn, ChipCard, Contactless, DeadChip, Swipe, TypedCode
from firmware.sale.machine import SaleState
from firmware.sale.runner import SaleRunner
from firmware.terminal.cabinet import Cabinet
from firmware.terminal.cardholder import PanelCardholder
from firmware.terminal.contactless import read_uid, storage_card

__all__ = ["Loop", "apply_prices", "card_in", "serve"]

log = logging.getLogger(__name__)


class Reader(Protocol):
    def wait_for_card(self, timeout: float) -> bool: ...
    def wait_for_removal(self, timeout: float) -> bool: ...
    def connect(self) -> bytes: ...
    def transmit(self, apdu: bytes) -> bytes: ...
    def disconnect(self) -> None: ...


class Stripes(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None: ...


@dataclass
class Loop:
    runner: SaleRunner
    port: PanelCardholder
    reader: Reader
    stripes: Stripes | None
    pumps: PumpController
    host: HostLink
    pump_numbers: tuple[int, ...]
    sells_offline: bool          # a program can sell while the registry is away (bank cards)
    idle: Callable[[], bool] | None = None   # between sales; True: stop now (an update to install)
    screen_fields: Callable[[], dict[str, Any]] | None = None   # more on the idle and offline screens
    desk: Callable[[CardIn], bool] | None = None   # an attendant's card (firmware.attendant): True, served
    cabinet: Cabinet | None = None     # door, tamper, paper sensor and lamps (firmware.terminal.cabinet)
    # each turn of the loop: the watchdog's sign of life; with seconds, the allowance of a long step (a sale)
    beat: Callable[[float | None], None] | None = None
    sale_allowance: float = 1800.0     # seconds one card's turn may hold the loop before the watchdog bites


def apply_prices(host: HostLink, pumps: PumpController, numbers: Iterable[int], *,
                 only_unprogrammed: bool = False) -> set[int]:
    """Send the configuration's prices to the pumps; the pumps still to update (mid-sale, or the update
    failed), which serve() retries every second until they take them."""
    later: set[int] = set()
    for pump in numbers:
        table = host.station.price_table(pump)
        if not table:
            continue
        try:
            state = pumps.status(pump).state
            if only_unprogrammed and state is not PumpState.NOT_PROGRAMMED:
                continue
            if state in (PumpState.AUTHORIZED, PumpState.FILLING):
                later.add(pump)     # a pump takes no price change mid-sale
                continue
            pumps.set_prices(pump, table)
        except PumpError as exc:
            log.warning("price update failed", extra={"pump": pump, "error": str(exc)})
            later.add(pump)
    return later


def idle_fields(loop: Loop, *, offline: bool = False) -> dict[str, Any]:
    """The idle screen's figures: prices per product, the payment means the programs accept (offline:
    those that sell without the registry), and the driver's language choice."""
    station = loop.host.station
    world = loop.runner.world
    payments = [p.name for p in world.programs if not offline or getattr(p, "sells_offline", False)]
    payments += [a.name for a in world.adjuncts]
    return {"prices": list(station.product_prices()), "currency": station.currency, "payments": payments,
            **loop.port.idle_fields()}


def card_in(reader: Reader) -> CardIn | None:
    """The card presented as the programs see it; None when it left before it answered, or when a tag
    gave no usable UID (logged; the card error screen, no sale)."""
    try:
        atr = reader.connect()
    except CardRemoved:
        return None
    except CardError as exc:        # no answer to reset: the chip is dead (a bank card may be swiped)
        log.warning("card did not answer", extra={"error": str(exc)})
        return DeadChip()
    tag = storage_card(atr)
    if tag is None:
        return ChipCard(reader, atr)
    try:
        return Contactless(read_uid(reader))
    except CardRemoved:
        return None
    except CardError as exc:
        log.warning("tag unreadable", extra={"error": str(exc), "standard": f"{tag.standard:02X}",
                                             "card_name": f"{tag.card_name:04X}"})
        return None


_card_in = card_in      # its older name (tests/test_contactless_tag.py)


def _swiped(stripes: Stripes | None) -> Track2 | None:
    """A swipe made at the idle screen, if any (never blocks); a garbled one is logged and dropped."""
    if stripes is None:
        return None
    try:
        return stripes.wait_swipe(0.0)
    except CardError as exc:
        log.warning("swipe unreadable", extra={"error": str(exc)})
        return None


def _one_sale(loop: Loop, card: CardIn | None) -> str | None:
    """Run one sale; a surprise in it is logged and the terminal goes on (its journal row stays open
    for recovery). A card reader problem goes to the caller. The sale's id, when one was journaled."""
    port = loop.port
    port.begin()
    try:
        if card is None:
            port.show(Screen.CARD_ERROR)
        elif loop.desk is None or not loop.desk(card):     # an attendant's card before any program's
            return loop.runner.serve(card)
    except CardError:
        raise
    except Exception:
        log.exception("sale failed")
        port.show(Screen.CARD_ERROR)
        loop.runner.recover_interrupted()     # an approval the failed sale held is given back now
    finally:
        port.end()
    return None


def _hold_card(loop: Loop, sale_id: str | None, stop: threading.Event) -> None:
    """A program that settles with the card in the reader (a chip purse: keeps_card) has it kept in until
    its sale is over; the filling screens go on meanwhile. A card pulled anyway ends the wait (its program
    completes the sale at the card's next insertion)."""
    world = loop.runner.world
    if sale_id is None or not getattr(world.program(world.journal.get(sale_id).program), "keeps_card", False):
        return
    while not stop.is_set() and world.journal.get(sale_id).state not in (SaleState.COMPLETED,
                                                                          SaleState.DECLINED):
        _beat(loop)
        if loop.reader.wait_for_removal(0.2):
            return


def _typed_sale(loop: Loop, stop: threading.Event) -> None:
    """A voucher's code typed at the idle screen, served as a card (firmware.programs.voucher)."""
    loop.port.begin()
    try:
        code = loop.port.type_code()
    except SaleCancelled:
        loop.port.end()
        loop.port.idle()
        return
    _one_sale(loop, TypedCode(code))
    del code
    stop.wait(3.0)              # the outcome stays readable
    loop.port.idle()


def serve(loop: Loop, stop: threading.Event, *, card_wait: float = 0.5) -> None:
    shown: tuple[Screen, str] | None = None
    last_recover = last_check = time.monotonic()
    host, reader = loop.host, loop.reader
    stale: set[int] = set()          # pumps whose new prices did not go in yet
    while not stop.is_set():
        if loop.idle is not None and loop.idle():
            break
        if host.config_changed.is_set():
            host.config_changed.clear()
            stale = apply_prices(host, loop.pumps, loop.pump_numbers)
            # fleet cards sell offline only while the configuration has an offline limit for them
            loop.sells_offline = any(getattr(p, "sells_offline", False) for p in loop.runner.world.programs)
        if time.monotonic() - last_check > 1.0:
            apply_prices(host, loop.pumps, loop.pump_numbers, only_unprogrammed=True)   # a pump restarted
            if stale:
                stale = apply_prices(host, loop.pumps, sorted(stale))
            last_check = time.monotonic()
        _beat(loop)
        if time.monotonic() - last_recover > 30 and loop.runner.needs_recovery():
            loop.runner.recover(pump_wait=0.0)   # sales a pump outage or a failed sale left open
            last_recover = time.monotonic()
        reason = _out_of_service(loop)
        if reason is not None:
            if shown != (Screen.OUT_OF_SERVICE, reason):
                log.warning("out of service", extra={"reason": reason})
                loop.port.show(Screen.OUT_OF_SERVICE)
                shown = (Screen.OUT_OF_SERVICE, reason)
            stop.wait(0.25)
            continue
        # without the registry fleet cards cannot be authorized; bank cards can, once prices are known
        priced = any(host.station.nozzles(p) for p in loop.pump_numbers)
        screen = (Screen.IDLE if host.online else
                  Screen.IDLE_BANK_ONLY if loop.sells_offline and priced else Screen.OFFLINE)
        fields = ({} if screen is Screen.OFFLINE else
                  idle_fields(loop, offline=screen is Screen.IDLE_BANK_ONLY))
        if loop.screen_fields is not None:
            fields = {**fields, **loop.screen_fields()}      # the backlog (firmware.deviceops)
        if (screen, repr(fields)) != shown:
            loop.port.show(screen, **fields)
            shown = (screen, repr(fields))
        # the driver picked a language on the idle screen (offline shows no choice): idle again, in it
        if screen is not Screen.OFFLINE and loop.port.idle_key(0.05):
            shown = None
            if loop.port.code_wanted:        # the voucher key: a code, then a sale like a card's
                _beat(loop, loop.sale_allowance)
                _typed_sale(loop, stop)
            continue
        try:
            if reader.wait_for_card(card_wait):
                _beat(loop, loop.sale_allowance)
                loop.port.show(Screen.READING)
                _hold_card(loop, _one_sale(loop, card_in(reader)), stop)
                _wait_removal(loop, stop)
                loop.port.idle()
                shown = None
                continue
            track = _swiped(loop.stripes)
            if track is not None:
                _beat(loop, loop.sale_allowance)
                _one_sale(loop, Swipe(track))
                stop.wait(3.0)          # the outcome stays readable; there is no card to wait for
                loop.port.idle()
                shown = None
        except CardError as exc:
            log.warning("card reader problem", extra={"error": str(exc)})
            loop.port.idle()
            shown = None
            time.sleep(0.5)
        finally:
            try:
                reader.disconnect()
            except CardError:
                pass


def _beat(loop: Loop, allowance: float | None = None) -> None:
    if loop.beat is not None:
        loop.beat(allowance)


def _out_of_service(loop: Loop) -> str | None:
    """Why the housing keeps the terminal out of service (no card is read meanwhile), or None; the lamps
    follow."""
    cabinet = loop.cabinet
    if cabinet is None:
        return None
    reason = cabinet.out_of_service()
    cabinet.lamps(in_service=reason is None, online=loop.host.online)
    return reason


def _wait_removal(loop: Loop, stop: threading.Event) -> None:
    """The outcome (declined and why, lift nozzle) stays readable until the card leaves, or 3 s."""
    if not loop.reader.wait_for_removal(3.0):
        loop.port.show(Screen.REMOVE_CARD)
        while not stop.is_set() and not loop.reader.wait_for_removal(0.5):
            _beat(loop)


