"""The card sale, step by step: fleet cards here, bank cards in firmware.bank, the pump part shared.
Each state change is journaled before the terminal acts on it, so a restart can settle a sale from the
pump's own figures exactly once (see recover()).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from contracts.cards import card_token
from contracts.errors import (
    CardError,
    CardNotAccepted,
    CardRemoved,
    HostUnavailable,
    PinPadError,
    PrinterError,
    PumpError,
    PumpTimeout,
)
from contracts.pump import PumpController, PumpState, PumpStatus
from contracts.receipt import ReceiptLine
from firmware.fleet import FleetCardData, read_fleet_card
from firmware.hostlink import HostLink
from firmware.journal import Journal, SaleRecord
from firmware.receipt import format_litres, format_money
from firmware.sale_receipt import receipt_for
from firmware.station import StationConfig

if TYPE_CHECKING:
    from contracts.track2 import Track2
    from firmware.bank import BankSale

__all__ = ["Devices", "SaleFlow"]

log = logging.getLogger(__name__)

# A pump in one of these states mid-sale lost its filling display (RESET, power cycle, switch-off).
_ENDED_WITHOUT_FIGURES = (PumpState.RESET, PumpState.NOT_PROGRAMMED, PumpState.SWITCHED_OFF)


def _changed_from(seq: int) -> Callable[[PumpStatus], bool]:
    return lambda s: s.seq != seq or s.state is PumpState.OFFLINE


class Reader(Protocol):
    def wait_for_card(self, timeout: float) -> bool: ...
    def wait_for_removal(self, timeout: float) -> bool: ...
    def connect(self) -> bytes: ...
    def transmit(self, apdu: bytes) -> bytes: ...
    def disconnect(self) -> None: ...


class Panel(Protocol):
    def show(self, screen: str, **fields: Any) -> None: ...
    def flush_keys(self) -> None: ...
    def read_key(self, timeout: float) -> str | None: ...
    def set_language(self, code: str) -> None: ...
    @property
    def languages(self) -> tuple[str, ...]: ...


class PinEntry(Protocol):
    def read_pin_block(self, pan: str, timeout: float, on_digits: Callable[[int], None] = ...) -> bytes: ...


class Printer(Protocol):
    def print_lines(self, lines: Any) -> None: ...


@dataclass
class Devices:
    reader: Reader
    panel: Panel
    pinpad: PinEntry
    pumps: PumpController
    printer: Printer


class SaleFlow:
    def __init__(self, *, terminal: str, station: str, pumps: tuple[int, ...], devices: Devices,
                 journal: Journal, host: HostLink, token_key: bytes, timeouts: Any,
                 language: str = "en") -> None:
        self.terminal, self.station, self.pump_numbers = terminal, station, pumps
        self.language = language
        self.bank: BankSale | None = None       # bank cards accepted when set
        self.prices = StationConfig(host)
        self.dev, self.journal, self.host = devices, journal, host
        self.token_key, self.timeouts = token_key, timeouts
        self._lock = threading.Lock()
        self._followers: dict[int, threading.Thread] = {}
        self._print_lock = threading.Lock()
        # a cardholder is at the terminal: followers keep off the screen
        self.interacting = threading.Event()

    def busy_pumps(self) -> set[int]:
        with self._lock:
            return {p for p, t in self._followers.items() if t.is_alive()}

    def unavailable_pumps(self) -> set[int]:
        """Followed pumps, and pumps whose last sale is still open (its figures are not yet settled)."""
        return self.busy_pumps() | {rec.pump for rec in self.journal.open_sales()}

    def _show(self, screen: str, **fields: Any) -> None:
        if not self.interacting.is_set():
            self.dev.panel.show(screen, **fields)

    def _spawn(self, rec: SaleRecord, *, recovered: bool) -> None:
        t = threading.Thread(target=self._follow_safely, args=(rec, recovered), name=f"pump-{rec.pump}",
                             daemon=True)
        with self._lock:
            self._followers[rec.pump] = t
        t.start()

    def _follow_safely(self, rec: SaleRecord, recovered: bool) -> None:
        try:
            self._follow(rec, recovered=recovered)
        except Exception:  # a follower must never die silently: the sale stays open for recover()
            log.exception("following the pump failed; sale left open", extra={"sale_id": rec.id})

    # -- one sale, from card in to receipt out -------------------------------------------------------
    def run_sale(self) -> str | None:
        """Serve the card now in the reader; return the sale id when one was created. The pump, once
        authorized, is followed by its own thread, so the terminal can serve the next card."""
        self.interacting.set()
        try:
            return self._run_sale()
        finally:
            self.interacting.clear()

    def run_swipe(self, track: Track2) -> str | None:
        """A bank card swiped at the idle screen (magnetic stripe only cards)."""
        if self.bank is None:
            return None
        self.interacting.set()
        try:
            return self.bank.run_swipe(track)
        finally:
            self.interacting.clear()

    def _run_sale(self) -> str | None:
        dev = self.dev
        dev.panel.show("reading")
        try:
            dev.reader.connect()
        except CardError as exc:        # no answer to reset: the chip is dead (a bank card may be swiped)
            log.warning("card did not answer", extra={"error": str(exc)})
            if self.bank is not None and not isinstance(exc, CardRemoved):
                return self.bank.run(chip_failed=True)
            dev.panel.show("card_error")
            return None
        try:
            card = read_fleet_card(dev.reader)
        except CardError as exc:
            if self.bank is not None and not isinstance(exc, CardRemoved):
                return self.bank.run()          # not a fleet card: try it as a bank card
            if not isinstance(exc, CardNotAccepted):
                log.warning("card read failed", extra={"error": str(exc)})
            dev.panel.show("card_not_accepted" if isinstance(exc, CardNotAccepted) else "card_error")
            return None
        if card.expired(dt.date.today()):
            dev.panel.show("declined", reason="card_expired")
            return None
        if not self.host.online:
            dev.panel.show("host_unavailable")
            return None
        pump = self.choose_pump()
        if pump is None:
            return None
        try:
            pin_block = self._read_pin(card)
        except PinPadError:
            dev.panel.show("remove_card")
            return None
        sale_id = str(uuid.uuid4())
        self.journal.begin_sale(sale_id, pump, card.masked, card_token(self.token_key, card.pan))
        self.journal.transition(sale_id, "authorizing")
        dev.panel.show("authorizing")
        try:
            answer = self.host.authorize(pan=card.pan, expiry=card.expiry, pin_block=pin_block, pump=pump,
                                         timeout=self.timeouts.auth)
        except HostUnavailable as exc:
            log.warning("authorization failed", extra={"sale_id": sale_id, "error": str(exc)})
            self.journal.transition(sale_id, "declined", reason="host_unavailable")
            dev.panel.show("host_unavailable")
            return sale_id
        finally:
            del pin_block
        if not answer["approved"]:
            self.journal.transition(sale_id, "declined", reason=answer["reason"])
            dev.panel.show("declined", reason=answer["reason"])
            return sale_id
        self.journal.transition(sale_id, "approved", auth_id=answer["auth_id"],
                                allowed_cl=answer["allowed_cl"], nozzles=answer["nozzles"])
        self.dispense(self.journal.get(sale_id))
        return sale_id

    def choose_pump(self) -> int | None:
        taken = self.unavailable_pumps()
        free = [p for p in self.pump_numbers if p not in taken]
        if not free:
            self.dev.panel.show("pump_busy")
            return None
        if len(self.pump_numbers) == 1:
            return free[0]
        self.dev.panel.flush_keys()
        self.dev.panel.show("select_pump", pumps=",".join(map(str, free)))
        deadline = time.monotonic() + self.timeouts.pin_entry
        while time.monotonic() < deadline:
            key = self.dev.panel.read_key(0.5)
            if key == "CANCEL":
                return None
            if key is not None and key.isdigit() and int(key) in free:
                return int(key)
        return None

    def _read_pin(self, card: FleetCardData) -> bytes:
        self.dev.panel.flush_keys()     # keys pressed before the prompt are not PIN digits
        self.dev.panel.show("enter_pin", stars="")
        return self.dev.pinpad.read_pin_block(card.pan, self.timeouts.pin_entry,
                                              lambda n: self.dev.panel.show("enter_pin", stars="*" * n))

    # -- the pump part ------------------------------------------------------------------------------
    def _totals(self, pump: int, nozzles: tuple[int, ...]) -> dict[int, tuple[int, int]]:
        """Electronic totals per nozzle: (volume_cl, amount_cents); they only grow."""
        out = {}
        for n in nozzles:
            t = self.dev.pumps.totals(pump, n)
            out[n] = (t.volume_cl, t.amount_cents)
        return out

    def pump_numbers_priced(self) -> bool:
        """The configuration (cached across restarts) prices at least one of this terminal's pumps."""
        return any(self.prices.nozzles(p) for p in self.pump_numbers)

    def dispense(self, rec: SaleRecord) -> None:
        """Release the pump for an approved sale: a fleet sale by volume, a bank sale by amount."""
        pumps = self.dev.pumps
        try:
            before = self._totals(rec.pump, rec.nozzles)
        except PumpError as exc:
            log.error("pump totals unreadable; pump not released",
                      extra={"sale_id": rec.id, "error": str(exc)})
            self.dev.panel.show("pump_error")
            self._settle_unreleased(rec, recovered=False)
            return
        try:
            # journaled before the pump is released: a restart then knows fuel may have flowed
            self.journal.transition(rec.id, "pump_authorized", totals_before=before)
            if rec.kind == "bank":
                pumps.authorize(rec.pump, nozzles=rec.nozzles, amount_cents=rec.allowed_cents)
            else:
                pumps.authorize(rec.pump, nozzles=rec.nozzles, volume_cl=rec.allowed_cl)
        except PumpError as exc:
            log.error("pump authorization failed", extra={"sale_id": rec.id, "error": str(exc)})
            self.dev.panel.show("pump_error")
            # the command may have reached the pump before the error: never leave it released
            try:
                released = pumps.status(rec.pump).state in (PumpState.AUTHORIZED, PumpState.FILLING)
            except PumpError:
                released = True
            if released:
                self._stop_quietly(rec.pump)
            self._settle(self.journal.get(rec.id), recovered=False)
            return
        if rec.kind == "bank":
            self.dev.panel.show("lift_nozzle_amount", pump=rec.pump,
                                amount=self.prices.money(rec.allowed_cents or 0))
        else:
            self.dev.panel.show("lift_nozzle", pump=rec.pump, litres=format_litres(rec.allowed_cl or 0))
        self._spawn(self.journal.get(rec.id), recovered=False)

    def _follow(self, rec: SaleRecord, *, recovered: bool) -> None:
        """Follow an authorized pump until the filling is over, then settle."""
        pumps = self.dev.pumps
        try:
            st = pumps.wait_status(rec.pump, lambda s: s.state is PumpState.FILLING or s.state.finished
                                   or s.state is PumpState.OFFLINE, self.timeouts.nozzle_lift)
        except PumpTimeout:
            log.info("nozzle not lifted in time, pump stopped", extra={"sale_id": rec.id})
            self._stop_quietly(rec.pump)
            self._settle(self.journal.get(rec.id), recovered=recovered)
            return
        deadline = time.monotonic() + self.timeouts.filling
        while not st.state.finished and time.monotonic() < deadline:
            if st.state in _ENDED_WITHOUT_FIGURES:
                log.warning("pump reset or restarted mid-sale; settling from its totals",
                            extra={"sale_id": rec.id, "state": st.state.value})
                break
            if st.state is PumpState.OFFLINE:
                st = self._pump_lost(rec)
                if st.state is PumpState.OFFLINE:
                    break
                continue
            if st.state is PumpState.FILLING:
                self._show("filling", pump=rec.pump, litres=format_litres(st.volume_cl),
                           amount=format_money(st.amount_cents, self.prices.currency))
            try:
                st = pumps.wait_status(rec.pump, _changed_from(st.seq), 2.0)
            except PumpTimeout:
                st = pumps.status(rec.pump)
        if st.state in (PumpState.AUTHORIZED, PumpState.FILLING):
            self._stop_quietly(rec.pump)
        self._settle(self.journal.get(rec.id), recovered=recovered)

    def _pump_lost(self, rec: SaleRecord) -> PumpStatus:
        """The pump stopped answering mid-sale: flag the sale, wait for the pump, then stop it."""
        log.error("pump offline mid-sale", extra={"sale_id": rec.id, "pump": rec.pump})
        fresh = self.journal.get(rec.id)
        if "attendant_check" not in fresh.flags:
            self.journal.transition(rec.id, fresh.state, flags=list(fresh.flags) + ["attendant_check"])
        self._show("pump_error")
        try:
            st = self.dev.pumps.wait_status(rec.pump, lambda s: s.state is not PumpState.OFFLINE,
                                            self.timeouts.pump_offline)
        except PumpTimeout:
            return self.dev.pumps.status(rec.pump)
        if st.state in (PumpState.AUTHORIZED, PumpState.FILLING):
            self._stop_quietly(rec.pump)
            st = self.dev.pumps.status(rec.pump)
        return st

    def _stop_quietly(self, pump: int) -> None:
        try:
            self.dev.pumps.stop(pump)
        except PumpError as exc:
            log.warning("pump stop failed", extra={"pump": pump, "error": str(exc)})

    def _settle(self, rec: SaleRecord, *, recovered: bool) -> None:
        """Complete the sale with the pump's own figures, cross-checked against its totals.

        A pump that cannot be read leaves the sale open, flagged for the attendant; recover() settles it
        once the pump answers again.
        """
        flags = list(rec.flags)
        try:
            st = self.dev.pumps.status(rec.pump)
            if st.state is PumpState.OFFLINE:
                raise PumpTimeout("pump offline", pump=rec.pump)
            after = self._totals(rec.pump, rec.nozzles) if rec.totals_before is not None else None
        except PumpError as exc:
            log.error("pump unreadable; sale left open for the attendant",
                      extra={"sale_id": rec.id, "error": str(exc)})
            if "attendant_check" not in flags:
                self.journal.transition(rec.id, rec.state, flags=flags + ["attendant_check"])
            self._show("pump_error")
            return
        nozzle, volume, amount, price = st.nozzle, st.volume_cl, st.amount_cents, st.price_milli
        if after is None or rec.totals_before is None:
            if not st.state.finished:
                volume = amount = 0       # the pump was never released for this sale
        else:
            moved = {n: (after[n][0] - rec.totals_before[n][0], after[n][1] - rec.totals_before[n][1])
                     for n in after if n in rec.totals_before}
            moved_cl = sum(v for v, _ in moved.values())
            if moved_cl == 0:
                volume = amount = 0       # nothing flowed for this sale
            elif not st.state.finished:
                # the pump lost its filling display (reset, restart): its totals still say what flowed
                nozzle = max(moved, key=lambda n: moved[n][0])
                volume, amount = moved_cl, sum(a for _, a in moved.values())
                price = self.prices.price(rec.pump, nozzle) or price
                flags.append("settled_from_totals")
            elif moved_cl != volume:
                flags.append("totals_mismatch")
        product, _ = self.prices.product(rec.pump, nozzle)
        if rec.kind == "bank":
            if rec.allowed_cents is not None and amount > rec.allowed_cents:
                flags.append("over_authorized")      # the pump ran past its preset: the attendant collects
            self._bank_advice(rec, amount, flags)
        self.journal.transition(rec.id, "completed", nozzle=nozzle, product=product, volume_cl=volume,
                                amount_cents=amount, price_milli=price, finished_at=time.time(),
                                recovered=recovered, flags=flags)
        self.host.kick()
        self.print_receipt(self.journal.get(rec.id))

    def print_receipt(self, rec: SaleRecord) -> None:
        """Print once. A print begun but never confirmed (a crash or a printer fault in between) is
        printed again marked as a duplicate, so the paper can never show two originals."""
        if not rec.volume_cl:
            self._show("no_fuel")
            return
        with self._print_lock:
            fresh = self.journal.get(rec.id)
            if fresh.receipt_printed:
                return
            if not fresh.receipt_started:
                self.journal.mark(rec.id, "receipt_started")
            try:
                self.dev.printer.print_lines(self._receipt_lines(fresh, copy=fresh.receipt_started))
            except PrinterError as exc:
                log.error("receipt not printed", extra={"sale_id": rec.id, "error": str(exc)})
                return
            self.journal.mark(rec.id, "receipt_printed")
        self._show("thank_you", litres=format_litres(rec.volume_cl),
                   amount=format_money(rec.amount_cents or 0, self.prices.currency))

    def _receipt_lines(self, rec: SaleRecord, *, copy: bool) -> list[ReceiptLine]:
        _, product = self.prices.product(rec.pump, rec.nozzle or 0)
        return receipt_for(rec, self.host.config or {}, station=self.station, terminal=self.terminal,
                           product=product, currency=self.prices.currency, copy=copy)

    def _bank_advice(self, rec: SaleRecord, amount: int, flags: list[str]) -> None:
        """Queue the bank sale's completion or reversal; without a bank set-up (acquirer removed from the
        configuration) the sale is flagged so the money is settled by hand, never silently dropped."""
        if self.bank is not None:
            self.bank.finish(rec, amount)
        else:
            log.error("bank sale settled without an acquirer configured", extra={"sale_id": rec.id})
            flags.append("advice_not_sent")

    # -- after a restart ----------------------------------------------------------------------------
    def recover(self, pump_wait: float = 10.0) -> list[str]:
        """Settle every sale a crash or a pump outage left open, then print receipts not yet printed.
        pump_wait is how long to wait for a pump that does not answer (0 on the periodic retry)."""
        done = self.bank.recover() if self.bank is not None else []
        busy = self.busy_pumps()
        for rec in self.journal.open_sales():
            if rec.pump in busy:
                continue
            log.info("recovering open sale", extra={"sale_id": rec.id, "state": rec.state})
            if rec.state == "approved":
                # the pump was never released for this sale
                self._settle_unreleased(rec)
            else:
                self._recover_pump(rec, pump_wait)
            done.append(rec.id)
        for rec in self.journal.unprinted():
            self.print_receipt(rec)
        return done

    def _settle_unreleased(self, rec: SaleRecord, *, recovered: bool = True) -> None:
        flags = list(rec.flags)
        if rec.kind == "bank":
            self._bank_advice(rec, 0, flags)  # the hold goes back: reversal, nothing dispensed
        self.journal.transition(rec.id, "completed", nozzle=0, volume_cl=0, amount_cents=0, price_milli=0,
                                finished_at=time.time(), recovered=recovered, flags=flags)
        self.host.kick()

    def _recover_pump(self, rec: SaleRecord, pump_wait: float) -> None:
        try:
            st = self.dev.pumps.wait_status(rec.pump, lambda s: s.state is not PumpState.OFFLINE, pump_wait)
        except PumpTimeout:
            self._settle(rec, recovered=True)   # leaves it open and flagged
            return
        if st.state in (PumpState.AUTHORIZED, PumpState.FILLING):
            self._spawn(rec, recovered=True)
        else:
            self._settle(rec, recovered=True)
