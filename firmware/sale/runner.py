"""One sale, top to bottom: a card comes in, a program claims it and authorizes it through the
cardholder port, the pump is released to the grant and followed, the figures are settled and the
receipt printed. Recovery after a restart is here too. The programs are passed in; this module knows
none of them by name.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from contracts.cards import card_token, mask_number
from contracts.errors import CardError, CardRemoved, SaleCancelled
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.programs.base import CardIn, Claim, Decline, Declined, Grant
from firmware.sale.limits import driver_limits
from firmware.sale.machine import Recovery, SaleState, recovery
from firmware.sale.pumpwork import PumpWork, journaled_figures
from firmware.sale.record import SaleRecord
from firmware.sale.world import SaleWorld
from firmware.station import Station

__all__ = ["SaleRunner"]

log = logging.getLogger(__name__)

CANCELLED = Decline(DeclineReason.CANCELLED, Screen.REMOVE_CARD)


class _Steps:
    """The SaleSteps a program gets for one sale."""

    def __init__(self, runner: SaleRunner, program: str, riders: Mapping[str, Mapping[str, Any]]) -> None:
        self._runner, self._program, self._riders = runner, program, riders
        self.port = runner.world.port
        self.now = runner.world.clock.now
        self.sale_id: str | None = None

    def station(self) -> Station:
        return self._runner.world.station()

    def choose_pump(self) -> int:
        w = self._runner.world
        free = [p for p in w.pump_numbers if p not in self._runner.unavailable_pumps()]
        if not free:
            raise Declined(Decline(DeclineReason.PUMP_BUSY, Screen.PUMP_BUSY))
        pump = free[0] if len(w.pump_numbers) == 1 else self.port.choose_pump(free)
        if not w.station().nozzles(pump):
            raise Declined(Decline(DeclineReason.PUMP_UNKNOWN))
        return pump

    def begin(self, pump: int, pan: str, *, masked: str | None = None) -> str:
        w = self._runner.world
        sale_id = str(uuid.uuid4())
        w.journal.begin_sale(sale_id, pump, masked or mask_number(pan), card_token(w.token_key, pan),
                             program=self._program, adjuncts=self._runner.bind_riders(self._riders, sale_id))
        self.sale_id = sale_id
        return sale_id

    def authorizing(self, data: Mapping[str, Any] | None = None) -> None:
        if self.sale_id is None:
            raise ValueError("authorizing before begin")
        self._runner.world.journal.transition(self.sale_id, SaleState.AUTHORIZING, data=dict(data or {}))


class SaleRunner:
    def __init__(self, world: SaleWorld) -> None:
        self.world = world
        self.pump = PumpWork(world)
        # adjunct cards read for the next payment: name -> (when read, its document)
        self._riders: dict[str, tuple[float, Mapping[str, Any]]] = {}

    def unavailable_pumps(self) -> set[int]:
        """Followed pumps, and pumps whose last sale is still open (its figures are not yet settled)."""
        return self.pump.following() | {rec.pump for rec in self.world.journal.open_sales()}

    def _take_riders(self) -> dict[str, Mapping[str, Any]]:
        """The adjunct cards read for this payment; one read longer ago than timeouts.rider belonged to
        a cardholder who walked away without paying, and is dropped."""
        now, limit = self.world.clock.monotonic(), self.world.timeouts.rider
        riders = {name: doc for name, (at, doc) in self._riders.items() if now - at <= limit}
        self._riders.clear()
        return riders

    def drop_riders(self) -> None:
        """Forget the adjunct cards read so far (an attendant signs in: they ride along no sale of theirs)."""
        self._riders.clear()

    def bind_riders(self, riders: Mapping[str, Mapping[str, Any]], sale_id: str) -> dict[str, Any]:
        """The riders' documents as the journal keeps them for this sale (Adjunct.bind, when it has one)."""
        out: dict[str, Mapping[str, Any]] = {}
        for adjunct in self.world.adjuncts:
            doc = riders.get(adjunct.name)
            if doc is not None:
                bind = getattr(adjunct, "bind", None)
                out[adjunct.name] = bind(doc, sale_id) if callable(bind) else doc
        return out

    # -- card in -> pump released --------------------------------------------------------------------
    def serve(self, card: CardIn) -> str | None:
        """Serve one card; returns the sale id when a sale was journaled. The pump, once released, is
        followed in the background, so the terminal can serve the next card."""
        outcome = self._claim(card)
        if outcome is None:
            return None
        if isinstance(outcome, Decline):
            self._show(outcome)
            return None
        return self.run(outcome)

    def run(self, outcome: Claim) -> str | None:
        """Authorize a claimed card, or an attendant's order (firmware.attendant: a cash prepay), and
        release the pump; returns the sale id when a sale was journaled."""
        steps = _Steps(self, outcome.program.name, self._take_riders())
        try:
            answer = outcome.program.authorize(outcome, steps)
        except Declined as exc:
            answer = exc.decline
        except SaleCancelled:
            answer = CANCELLED
        sale_id = steps.sale_id
        if isinstance(answer, Decline):
            if sale_id is not None:
                extra = {"data": dict(answer.data)} if answer.data else {}
                self.world.journal.transition(sale_id, SaleState.DECLINED, reason=answer.reason, **extra)
            self._show(answer)
            return sale_id
        if sale_id is None:
            raise ValueError(f"program {outcome.program.name} granted a sale it never began")
        self._approve(sale_id, answer)
        return sale_id

    def _claim(self, card: CardIn) -> Claim | Decline | None:
        """The first adjunct or program that takes the card. None: an adjunct took it (the payment card
        comes next), or nobody could read it and the screen says so."""
        w = self.world
        for adjunct in w.adjuncts:
            doc = adjunct.claim(card)
            if doc is not None:
                self._riders[adjunct.name] = (w.clock.monotonic(), doc)
                shown = getattr(adjunct, "shown", None)
                w.port.show(Screen.CARD_READ, card=adjunct.name, **(shown(doc) if callable(shown) else {}))
                return None
        failed: CardError | None = None
        for program in w.programs:
            try:
                outcome = program.claim(card)
            except CardRemoved:
                return Decline(DeclineReason.CARD_REMOVED, Screen.CARD_ERROR)
            except CardError as exc:        # unreadable for this program: another may still take it
                failed = exc
                continue
            if outcome is not None:
                return outcome
        if failed is not None:
            log.warning("card read failed", extra={"error": str(failed)})
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)
        return Decline(DeclineReason.NOT_ACCEPTED, Screen.CARD_NOT_ACCEPTED)

    def _approve(self, sale_id: str, grant: Grant) -> None:
        w = self.world
        w.journal.transition(sale_id, SaleState.APPROVED, preset=grant.preset, nozzles=list(grant.nozzles),
                             reference=grant.reference, data=dict(grant.data))
        if grant.notice is not None:
            screen, fields = grant.notice
            w.port.notice(screen, 1.5, **fields)   # e.g. a partial approval, read before "lift nozzle"
        rec = w.journal.get(sale_id)
        try:
            preset, nozzles = driver_limits(w.port, w.station(), rec.pump, grant)
        except SaleCancelled:
            # the driver left: complete with nothing dispensed, which gives the program's hold back
            self._show(CANCELLED)
            self.pump.complete_unreleased(rec, recovered=False)
            return
        if (preset, nozzles) != (grant.preset, grant.nozzles):
            w.journal.transition(sale_id, SaleState.APPROVED, preset=preset, nozzles=list(nozzles))
        self.pump.dispense(w.journal.get(sale_id))

    def _show(self, decline: Decline) -> None:
        # a wrong PIN the host counted: the tries it leaves (fleet: AUTH_RESPONSE pin_tries_left)
        tries = decline.data.get("pin_tries_left")
        extra: dict[str, Any] = {"tries": tries} if isinstance(tries, int) else {}
        shown = decline.data.get("shown")          # the program's own fields (a voucher's refusal)
        if isinstance(shown, Mapping):
            extra.update(shown)
        self.world.port.show(decline.screen, reason=decline.reason, **extra)

    # -- after a restart -----------------------------------------------------------------------------
    def needs_recovery(self) -> bool:
        j = self.world.journal
        return bool(j.sales_in(SaleState.CREATED, SaleState.AUTHORIZING) or j.open_sales())

    def recover(self, pump_wait: float = 10.0) -> list[str]:
        """Close what a crash, a failed sale or a pump outage left open, then print receipts not yet
        printed. pump_wait: how long to wait for a pump that does not answer (0 on the periodic retry)."""
        w = self.world
        done = self.recover_interrupted()
        busy = self.pump.following()
        for rec in w.journal.open_sales():
            if rec.pump in busy:
                continue
            self.recover_sale(rec, pump_wait)
            done.append(rec.id)
        for rec in w.journal.unprinted():
            try:
                self.pump.print_receipt(rec)
            except Exception:   # a damaged row must not stop the terminal: the attendant reprints it
                log.exception("receipt not printed", extra={"sale_id": rec.id})
        return done

    def recover_sale(self, rec: SaleRecord, pump_wait: float) -> None:
        """Close one open sale (also the attendant's "settle open sale" for its pump)."""
        log.info("recovering open sale", extra={"sale_id": rec.id, "state": rec.state.value})
        if journaled_figures(rec) is not None:   # settled, not yet completed: book those figures
            self.pump.settle(rec, recovered=True)
        elif recovery(rec.state) is Recovery.SETTLE_UNRELEASED:
            self.pump.complete_unreleased(rec, recovered=True)
        else:
            self.pump.recover(rec, pump_wait)

    def recover_interrupted(self) -> list[str]:
        """Sales stopped before the pump part: their program undoes what may be held (an approval), or
        names a hold the host may have granted, which is then settled with nothing dispensed."""
        w = self.world
        done = []
        for rec in w.journal.sales_in(SaleState.CREATED, SaleState.AUTHORIZING):
            program = w.program(rec.program)
            try:
                outcome = program.recover(rec) if program is not None else Decline(DeclineReason.INTERRUPTED)
            except Exception:   # one damaged sale must not stop the rest; it stays for the attendant
                log.exception("sale not recovered; see the attendant", extra={"sale_id": rec.id})
                continue
            if isinstance(outcome, Grant):
                w.journal.transition(rec.id, SaleState.APPROVED, preset=outcome.preset,
                                     nozzles=list(outcome.nozzles), reference=outcome.reference,
                                     data={**rec.data, **outcome.data}, recovered=True)
                self.pump.complete_unreleased(w.journal.get(rec.id), recovered=True)
            else:
                w.journal.transition(rec.id, SaleState.DECLINED, reason=outcome.reason, recovered=True)
            done.append(rec.id)
        return done
