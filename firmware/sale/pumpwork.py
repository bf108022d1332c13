"""The pump part of every sale: release the pump to the grant, follow the filling, settle it from the
pump's own figures once, and print the receipt once.

Blocking waits go through the PumpController; the follower runs wherever world.spawn puts it (a thread
of the terminal process). A pump that cannot be read leaves its sale open, flagged for the attendant;
recovery settles it once the pump answers again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from contracts.errors import (
    MessageError,
    PrinterError,
    PumpError,
    PumpLinkError,
    PumpStateError,
    PumpTimeout,
)
from contracts.pump import PumpState, PumpStatus
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import Figures, ReceiptHead
from firmware.sale.machine import OPEN_STATES, SaleState
from firmware.sale.record import SaleRecord
from firmware.sale.settlement import Totals, settle
from firmware.sale.world import SaleWorld

__all__ = ["PumpWork", "journaled_figures"]

log = logging.getLogger(__name__)

# A pump in one of these states mid-sale lost its filling display (RESET, power cycle, switch-off).
_ENDED_WITHOUT_FIGURES = (PumpState.RESET, PumpState.NOT_PROGRAMMED, PumpState.SWITCHED_OFF)
_RELEASED = (PumpState.AUTHORIZED, PumpState.FILLING)


def journaled_figures(rec: SaleRecord) -> Figures | None:
    """The figures journaled for an open sale before its program booked them, or None: not settled yet."""
    if rec.state not in OPEN_STATES or rec.charged_cents is None:
        return None
    return Figures(nozzle=rec.nozzle or 0, product=rec.product, volume_cl=rec.volume_cl or 0,
                   amount_cents=rec.amount_cents or 0, price_milli=rec.price_milli or 0)


def _changed_from(seq: int) -> Callable[[PumpStatus], bool]:
    return lambda s: s.seq != seq or s.state is PumpState.OFFLINE


class PumpWork:
    def __init__(self, world: SaleWorld) -> None:
        self.world = world
        self._lock = threading.Lock()
        self._following: set[int] = set()
        self._print_lock = threading.Lock()

    def following(self) -> set[int]:
        with self._lock:
            return set(self._following)

    # -- release -------------------------------------------------------------------------------------
    def dispense(self, rec: SaleRecord) -> None:
        """Release the pump for an approved sale, to its preset; then follow it in the background."""
        w = self.world
        try:
            before = self._totals(rec.pump, rec.nozzles)
        except PumpError as exc:
            log.error("pump totals unreadable; pump not released",
                      extra={"sale_id": rec.id, "error": str(exc)})
            w.port.show(Screen.PUMP_ERROR)
            self.complete_unreleased(rec, recovered=False)
            return
        preset = rec.preset
        if preset is None:
            raise ValueError("an approved sale has a preset")
        try:
            # journaled before the pump is released: a restart then knows fuel may have flowed
            w.journal.transition(rec.id, SaleState.PUMP_AUTHORIZED, totals_before=before)
            if preset.kind == "amount":
                w.pumps.authorize(rec.pump, nozzles=rec.nozzles, amount_cents=preset.value)
            else:
                w.pumps.authorize(rec.pump, nozzles=rec.nozzles, volume_cl=preset.value)
        except PumpError as exc:
            log.error("pump authorization failed", extra={"sale_id": rec.id, "error": str(exc)})
            w.port.show(Screen.PUMP_ERROR)
            # the command may have reached the pump before the error: never leave it released. A pump that
            # never answered may have taken it (its reply lost): stop it as if it had
            try:
                released = (isinstance(exc, (PumpTimeout, PumpLinkError))
                            or w.pumps.status(rec.pump).state in _RELEASED)
            except PumpError:
                released = True
            if released:
                self._stop_quietly(rec.pump)
            self.settle(w.journal.get(rec.id), recovered=False)
            return
        if preset.kind == "amount":
            w.port.show(Screen.LIFT_NOZZLE_AMOUNT, pump=rec.pump, amount_cents=preset.value,
                        currency=w.station().currency)
        else:
            w.port.show(Screen.LIFT_NOZZLE, pump=rec.pump, volume_cl=preset.value)
        self.follow_in_background(w.journal.get(rec.id), recovered=False)

    def follow_in_background(self, rec: SaleRecord, *, recovered: bool) -> None:
        with self._lock:
            self._following.add(rec.pump)

        def work() -> None:
            try:
                self.follow(rec, recovered=recovered)
            except Exception:  # a follower must never die silently: the sale stays open for recovery
                log.exception("following the pump failed; sale left open", extra={"sale_id": rec.id})
            finally:
                with self._lock:
                    self._following.discard(rec.pump)

        self.world.spawn(f"pump-{rec.pump}", work)

    # -- follow --------------------------------------------------------------------------------------
    def follow(self, rec: SaleRecord, *, recovered: bool) -> None:
        """Follow an authorized pump until the filling is over, then settle."""
        w = self.world
        pumps = w.pumps
        try:
            st = pumps.wait_status(rec.pump, lambda s: s.state is PumpState.FILLING or s.state.finished
                                   or s.state is PumpState.OFFLINE, w.timeouts.nozzle_lift)
        except PumpTimeout:
            log.info("nozzle not lifted in time, pump stopped", extra={"sale_id": rec.id})
            self._stop_quietly(rec.pump)
            self.settle(w.journal.get(rec.id), recovered=recovered)
            return
        deadline = w.clock.monotonic() + w.timeouts.filling
        while not st.state.finished and w.clock.monotonic() < deadline:
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
                w.display.status(Screen.FILLING, pump=rec.pump, volume_cl=st.volume_cl,
                                 amount_cents=st.amount_cents, currency=w.station().currency,
                                 price_milli=st.price_milli)
            try:
                st = pumps.wait_status(rec.pump, _changed_from(st.seq), 2.0)
            except PumpTimeout:
                st = pumps.status(rec.pump)
        if st.state in _RELEASED:
            self._stop_quietly(rec.pump)
        elif st.state.finished and st.nozzle_out:     # the preset was reached, the nozzle is still out
            w.display.status(Screen.HANG_UP, pump=rec.pump)
        self.settle(w.journal.get(rec.id), recovered=recovered)

    def recover(self, rec: SaleRecord, pump_wait: float) -> None:
        """After a restart: follow a pump still released for the sale, else settle from its figures (a
        pump that does not answer within pump_wait leaves the sale open and flagged)."""
        try:
            st = self.world.pumps.wait_status(rec.pump, lambda s: s.state is not PumpState.OFFLINE, pump_wait)
        except PumpTimeout:
            self.settle(rec, recovered=True)
            return
        if st.state in _RELEASED:
            self.follow_in_background(rec, recovered=True)
        else:
            self.settle(rec, recovered=True)

    def _pump_lost(self, rec: SaleRecord) -> PumpStatus:
        """The pump stopped answering mid-sale: flag the sale, wait for the pump, then stop it."""
        w = self.world
        log.error("pump offline mid-sale", extra={"sale_id": rec.id, "pump": rec.pump})
        w.journal.flag(rec.id, "attendant_check")
        w.display.status(Screen.PUMP_ERROR)
        try:
            st = w.pumps.wait_status(rec.pump, lambda s: s.state is not PumpState.OFFLINE,
                                     w.timeouts.pump_offline)
        except PumpTimeout:
            return w.pumps.status(rec.pump)
        if st.state in _RELEASED:
            self._stop_quietly(rec.pump)
            st = w.pumps.status(rec.pump)
        return st

    def _stop_quietly(self, pump: int) -> None:
        try:
            self.world.pumps.stop(pump)
        except PumpError as exc:
            log.warning("pump stop failed", extra={"pump": pump, "error": str(exc)})

    def _totals(self, pump: int, nozzles: tuple[int, ...]) -> dict[int, tuple[int, int]]:
        out = {}
        for n in nozzles:
            try:
                t = self.world.pumps.totals(pump, n)
            except MessageError as exc:        # e.g. a nozzle the line's protocol keeps no totals for
                raise PumpStateError("pump keeps no totals for this nozzle", pump=pump, nozzle=n) from exc
            out[n] = (t.volume_cl, t.amount_cents)
        return out

    # -- settle --------------------------------------------------------------------------------------
    def settle(self, rec: SaleRecord, *, recovered: bool) -> None:
        """Complete the sale with the pump's own figures, cross-checked against its totals (or with the
        figures journaled already, if a crash stopped it after that)."""
        w = self.world
        journaled = journaled_figures(rec)
        if journaled is not None:
            self.complete(rec, journaled, recovered=recovered, printed=bool(journaled.volume_cl))
            return
        try:
            st = w.pumps.status(rec.pump)
            if st.state is PumpState.OFFLINE:
                raise PumpTimeout("pump offline", pump=rec.pump)
            after: Totals | None = (self._totals(rec.pump, rec.nozzles) if rec.totals_before is not None
                                    else None)
        except PumpError as exc:
            log.error("pump unreadable; sale left open for the attendant",
                      extra={"sale_id": rec.id, "error": str(exc)})
            w.journal.flag(rec.id, "attendant_check")
            w.display.status(Screen.PUMP_ERROR)
            return
        station = w.station()
        figures = settle(st, rec.totals_before, after, price=lambda n: station.price(rec.pump, n),
                         product=lambda n: station.product(rec.pump, n)[0])
        self.complete(rec, figures, recovered=recovered)

    def complete_unreleased(self, rec: SaleRecord, *, recovered: bool) -> None:
        """The pump was never released for this sale: complete it with nothing dispensed."""
        self.complete(rec, Figures(nozzle=0, product=None, volume_cl=0, amount_cents=0, price_milli=0),
                      recovered=recovered, printed=False)

    def complete(self, rec: SaleRecord, figures: Figures, *, recovered: bool, printed: bool = True) -> None:
        """Charge the figures less what adjuncts take off, let the program book it, journal, print.

        The figures and the charge are journaled first (the sale stays open), then the program books them
        (a bank 0220), then the sale is completed: a restart in between books the journaled figures again,
        never figures read anew from a pump that may have moved on, so the journal and what the program
        booked cannot differ. A sale whose figures are journaled already is completed with those."""
        w = self.world
        if journaled_figures(rec) is None:
            rec = self._journal_figures(rec, figures)
        settled = journaled_figures(rec)
        if settled is None or rec.charged_cents is None:
            raise ValueError("figures were journaled")
        flags = list(rec.flags)
        program = w.program(rec.program)
        if program is None:     # the program was removed from the configuration: settle by hand
            log.error("sale of a program not configured", extra={"sale_id": rec.id, "program": rec.program})
            flags.append("program_unavailable")
        else:
            flags.extend(program.settle(rec, rec.charged_cents))
        w.journal.transition(rec.id, SaleState.COMPLETED, nozzle=settled.nozzle, product=settled.product,
                             volume_cl=settled.volume_cl, amount_cents=settled.amount_cents,
                             charged_cents=rec.charged_cents, price_milli=settled.price_milli,
                             finished_at=w.clock.time(), recovered=recovered,
                             flags=list(dict.fromkeys(flags)))
        w.on_completed()
        if printed:
            self.print_receipt(w.journal.get(rec.id))

    def _journal_figures(self, rec: SaleRecord, figures: Figures) -> SaleRecord:
        """Journal what the sale dispensed and what it charges, the sale still open."""
        w = self.world
        flags = [*rec.flags, *figures.flags]
        preset = rec.preset
        if preset is not None and (figures.amount_cents if preset.kind == "amount"
                                   else figures.volume_cl) > preset.value:
            flags.append("over_authorized")     # the pump ran past its preset: the attendant collects
        discount = 0
        for adjunct in w.adjuncts:
            doc = rec.adjuncts.get(adjunct.name)
            if doc is not None:
                discount += max(0, adjunct.discount(doc, figures))
        charged = figures.amount_cents - min(discount, figures.amount_cents)
        if getattr(w.program(rec.program), "prepaid", False):
            charged = 0         # paid before the sale (a paper voucher)
        w.journal.transition(rec.id, rec.state, nozzle=figures.nozzle, product=figures.product,
                             volume_cl=figures.volume_cl, amount_cents=figures.amount_cents,
                             charged_cents=charged, price_milli=figures.price_milli,
                             flags=list(dict.fromkeys(flags)))
        return w.journal.get(rec.id)

    # -- receipt -------------------------------------------------------------------------------------
    def print_receipt(self, rec: SaleRecord) -> None:
        """Print once. A print begun but never confirmed (a crash or a printer fault in between) is
        printed again marked as a duplicate, so the paper can never show two originals."""
        w = self.world
        if not rec.volume_cl:
            w.display.status(Screen.NO_FUEL)
            return
        with self._print_lock:
            fresh = w.journal.get(rec.id)
            if fresh.receipt_printed:
                return
            if not fresh.receipt_started:
                w.journal.mark(rec.id, "receipt_started")
            w.display.status(Screen.PRINTING)
            try:
                w.printer.print_lines(self.receipt_lines(fresh, copy=fresh.receipt_started))
            except PrinterError as exc:
                log.error("receipt not printed", extra={"sale_id": rec.id, "error": str(exc)})
                return
            w.journal.mark(rec.id, "receipt_printed")
        w.display.status(Screen.THANK_YOU, volume_cl=rec.volume_cl, amount_cents=rec.charged_cents or 0,
                         currency=w.station().currency, **self._thanks(rec))

    def _thanks(self, rec: SaleRecord) -> dict[str, Any]:
        """What the riders add to the "thank you" screen (a loyalty card's points: Adjunct.thanks)."""
        out: dict[str, Any] = {}
        for adjunct in self.world.adjuncts:
            doc, thanks = rec.adjuncts.get(adjunct.name), getattr(adjunct, "thanks", None)
            if doc is not None and callable(thanks):
                out.update(thanks(doc, rec))
        return out

    def receipt_lines(self, rec: SaleRecord, *, copy: bool) -> list[ReceiptLine]:
        w = self.world
        station = w.station()
        head = ReceiptHead(
            station_name=station.name, station=w.station_id, terminal=w.terminal, sale_id=rec.id,
            when=dt.datetime.fromtimestamp(rec.finished_at or w.clock.time(), dt.UTC), pump=rec.pump,
            product=station.product(rec.pump, rec.nozzle or 0)[1], volume_cl=rec.volume_cl or 0,
            price_milli=rec.price_milli or 0, amount_cents=rec.amount_cents or 0, card_masked=rec.card_masked,
            currency=station.currency, copy=copy)
        program = w.program(rec.program)
        lines = program.receipt(rec, head) if program is not None else []
        for adjunct in w.adjuncts:
            doc = rec.adjuncts.get(adjunct.name)
            if doc is not None:
                lines[-2:-2] = adjunct.receipt(doc, rec)
        return lines
