"""The attendant at the terminal: a card the signed configuration names as an attendant's, the PIN, then the
menu until sign-out (the menu key 0, CANCEL, or no key within the prompt's time: sign-out on inactivity).

Menu keys (the order of ITEMS; a simulator's scenario presses them on the panel): 1 cash prepay, 2 top-up
against cash, 3 points (then 1 a reward, 2 points to credit on a money card), 4 a card's last movements,
5 clear a pump error, 6 settle a sale left open, 7 reprint a receipt, 8 X report, 9 Z report (then a new
shift), 0 sign out. Every action is logged with the
attendant's id and kept in the shift's journal (firmware.attendant.shift); the Z report carries them to
the registry, which audits them (registry.attendants.audit_action).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.errors import ForecourtError, HostUnavailable, PrinterError, SaleCancelled
from contracts.pump import PumpController
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from contracts.service_messages import ServiceReason
from firmware.attendant import actions
from firmware.attendant.cash import CashProgram
from firmware.attendant.shift import ShiftBook, close_request
from firmware.attendant.signin import CardNumber, Refusal, Session, SignInGate, card_of, find
from firmware.programs.base import Cardholder, CardIn
from firmware.sale.runner import SaleRunner
from firmware.sale.world import Printer
from firmware.service_client import new_request_id

__all__ = ["ITEMS", "Desk", "DeskPort"]

log = logging.getLogger(__name__)

ITEMS = ("cash_prepay", "topup", "redeem", "movements", "clear_pump", "settle_open", "reprint", "x_report",
         "z_report", "sign_out")
SHIFT_CLOSE = "shift_close"          # the service operation that stores a Z report (and audits its actions)
PENDING = "desk:request:"            # a booking request's id, journaled until its answer came


class DeskPort(Cardholder, Protocol):
    def menu(self, screen: Screen, items: Sequence[str], **fields: Any) -> int: ...


class Service(Protocol):
    def ask(self, op: str, fields: Mapping[str, Any] | None = None, *, card: str | None = None,
            medium: str = "chip", code: str | None = None, request_id: str | None = None,
            sealed: Mapping[str, str] | None = None) -> Any: ...


@dataclass
class Desk:
    runner: SaleRunner
    port: DeskPort
    gate: SignInGate
    book: ShiftBook
    service: Service
    present: Callable[[], CardNumber | None]   # a customer's card presented (None: none came, cancelled)
    cash: CashProgram | None = None           # the cash program, when the terminal offers it
    linger: float = 2.0                       # seconds an outcome stays on the screen

    @property
    def pumps(self) -> PumpController:
        return self.runner.world.pumps

    @property
    def printer(self) -> Printer:
        return self.runner.world.printer

    def now(self) -> dt.datetime:
        return self.runner.world.clock.now()

    def __call__(self, card: CardIn) -> bool:
        """Serve an attendant's card: True when it was one (the session ran), False: not an attendant's."""
        if not (self.gate.host.config or {}).get("attendants"):
            return False                     # no attendant in the configuration: no card read for one
        read = card_of(card)
        entry = find(self.gate.host, read) if read is not None else None
        if read is None or entry is None:
            return False
        self.session(read, entry)
        return True

    def session(self, card: CardNumber, entry: Any) -> None:
        # a customer's card read before (a loyalty rider) must not ride along a sale the attendant starts
        self.runner.drop_riders()
        port = self.port
        port.show(Screen.ATTENDANT_SIGN_IN, stars="", name=entry.name)
        try:
            got = self.gate.sign_in(card, entry, port)
        except SaleCancelled:
            self.tell("sign_in", ok=False, reason="cancelled")
            return
        if isinstance(got, Refusal):
            extra = {} if got.tries_left is None else {"tries": got.tries_left}
            # a refused sign-in is a shift action too (registry.attendants.ACTIONS "sign_in"): its subject
            # says refused, why, and a lockout
            self.book.record(entry.id, "sign_in", f"refused:{got.reason}", online=got.online, **extra)
            self.tell("sign_in", ok=False, reason=got.reason, **extra)
            return
        self.book.record(got.attendant, "sign_in", f"terminal:{self.runner.world.terminal}",
                         online=got.online)
        self.send_unsent()
        self.menu_loop(got)

    def menu_loop(self, who: Session) -> None:
        while True:
            try:
                pick = ITEMS[self.port.menu(Screen.ATTENDANT_MENU, ITEMS, name=who.name)]
            except SaleCancelled:            # CANCEL, or no key in time: signed out on inactivity
                self.book.record(who.attendant, "sign_out", "", why="inactive_or_cancel")
                self.tell("sign_out", ok=True)
                return
            if pick == "sign_out":
                self.book.record(who.attendant, "sign_out", "", why="chosen")
                self.tell("sign_out", ok=True)
                return
            try:
                actions.ACTIONS[pick](self, who)
            except SaleCancelled:
                self.tell(pick, ok=False, reason="cancelled")
            except HostUnavailable:
                self.tell(pick, ok=False, reason="host_unavailable")
            except ForecourtError as exc:     # a device or journal refusal: shown, logged, the menu goes on
                log.error("attendant action failed", extra={"attendant": who.attendant, "action": pick,
                                                           "error": str(exc)})
                self.tell(pick, ok=False, reason="failed")

    def print(self, lines: Sequence[ReceiptLine]) -> bool:
        """Print a slip or report; a printer fault is logged and the action stands (what it booked is
        booked; a Z report stays in the journal)."""
        try:
            self.printer.print_lines(lines)
        except PrinterError as exc:
            log.error("attendant slip not printed", extra={"error": str(exc)})
            return False
        return True

    def tell(self, done: str, ok: bool, **fields: Any) -> None:
        """An action's outcome, left readable a moment before the menu comes back."""
        self.port.notice(Screen.ATTENDANT_RESULT, self.linger, done=done, ok=ok, **fields)

    def result(self, done: str, answer: Any, **fields: Any) -> None:
        """The outcome of a service request on the result screen."""
        if answer.ok:
            self.tell(done, ok=True, **fields)
        else:
            extra = {} if answer.tries_left is None else {"tries": answer.tries_left}
            self.tell(done, ok=False, reason=answer.reason or ServiceReason.NOT_ALLOWED, **extra)

    def customer_card(self) -> CardNumber:
        """The customer's card for a top-up, a redemption or movements; none in time: SaleCancelled."""
        self.port.show(Screen.ATTENDANT_CARD)
        card = self.present()
        if card is None:
            raise SaleCancelled("no card presented")
        return card

    def send_unsent(self) -> None:
        """Z reports the registry has not acknowledged: sent while it is reached (store and forward)."""
        if not self.gate.host.online:
            return
        for doc in self.book.unsent():
            try:
                answer = self.service.ask(SHIFT_CLOSE, close_request(doc))
            except HostUnavailable:
                return
            except ForecourtError as exc:       # a report the wire refuses: kept here, logged
                log.error("Z report not sendable", extra={"alarm": "z_report", "shift": doc["shift"],
                                                          "error": str(exc)})
                return
            if answer.ok:
                self.book.sent(int(doc["shift"]))
            elif answer.reason == ServiceReason.NOT_ALLOWED:     # for good: set aside, the next ones go on
                self.book.set_aside(int(doc["shift"]), answer.reason)
            else:
                log.error("registry refused a Z report",
                          extra={"shift": doc["shift"], "reason": answer.reason})
                return

    def booking(self, op: str, who: Session, fields: Mapping[str, Any], card: CardNumber,
                sealed: Mapping[str, str] | None = None) -> Any:
        """A request that books (top-up, reward, conversion) with the session's ticket: its id journaled
        first, then asked; no answer in time: asked once more under the same id (the registry keys the
        booking by it, so a lost answer never books twice). Still none: HostUnavailable, and the id stays
        journaled ("desk:request:<id>") for the operator to look up."""
        rid = new_request_id()
        key = f"{PENDING}{rid}"
        journal = self.runner.world.journal
        journal.put(key, json.dumps({"op": op, "attendant": who.attendant, "at": self.now().timestamp()}))
        doc = {**fields, "attendant": who.attendant, "ticket": who.ticket}
        try:
            answer = self.service.ask(op, doc, card=card.number, medium=card.medium, request_id=rid,
                                      sealed=sealed)
        except HostUnavailable as exc:
            log.warning("attendant request unanswered: asking again", extra={"op": op, "error": str(exc)})
            try:
                answer = self.service.ask(op, doc, card=card.number, medium=card.medium, request_id=rid,
                                          sealed=sealed)
            except HostUnavailable:
                log.error("attendant request unanswered twice", extra={"alarm": "service_unanswered",
                                                                       "op": op, "request": rid})
                raise
        journal.delete(key)
        return answer
