"""The bank card program at an automated fuel dispenser: EMV chip (magstripe after a chip failure, or a
stripe-only card swiped at the idle screen), online pre-authorization for the most one filling may cost
(firmware.programs.bank.host), the pump preset to the approved amount, then one completion (or reversal)
advice through the store-and-forward queue.

It claims every card the programs before it passed on: it is the last in the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.errors import (
    CardError,
    CardNotAccepted,
    CardRemoved,
    JournalError,
    MessageError,
    SyncError,
)
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import Exchanger, StoreAndForward
from firmware.emv import EmvConfig, run_transaction
from firmware.programs.bank.advice import AdviceForwarder, CardContext, Stan
from firmware.programs.bank.host import Acquirer
from firmware.programs.bank.magstripe import entry_mode_for_swipe, expired, sells_goods
from firmware.programs.bank.prompts import Prompts
from firmware.programs.bank.receipt import bank_receipt_for
from firmware.programs.bank.summary import CHIP, summary
from firmware.programs.base import (
    CardIn,
    ChipCard,
    Claim,
    DeadChip,
    Decline,
    Grant,
    ReceiptHead,
    SaleSteps,
    Swipe,
)
from firmware.sale.machine import SaleState
from firmware.sale.record import SaleRecord

__all__ = ["BankProgram", "BankSetup"]

log = logging.getLogger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class BankSetup:
    emv: EmvConfig
    terminal: iso.Terminal
    link: Exchanger                      # the pre-authorization connection
    saf: StoreAndForward
    forwarder: AdviceForwarder           # sends advices on its own connection
    stan: Stan
    preauth_cents: int
    response_timeout: float
    home_language: str
    keys_left: Callable[[], bool]        # False once the PIN pad's DUKPT keys are used up
    after_pin: Callable[[], None]        # persists the DUKPT counter
    magstripe: bool                      # a stripe reader head is fitted
    parts: tuple[Closable, ...] = ()     # connections to close at shutdown, after the forwarder stops
    dialect: iso.Dialect = iso.DIALECT   # the acquirer's ISO 8583 dialect (contracts.iso8583_spec)


class _ChipWatch:
    """Passes APDUs to the reader and notes a technical failure (an error status 64xx/65xx/6Fxx, or a
    transmission error): only those allow magstripe fallback, not a card that simply has no application."""

    def __init__(self, reader: Any) -> None:
        self.reader, self.faulted = reader, False

    def transmit(self, apdu: bytes) -> bytes:
        try:
            answer: bytes = self.reader.transmit(apdu)
        except CardError:
            self.faulted = True
            raise
        if len(answer) < 2 or answer[-2] in (0x64, 0x65, 0x6F):
            self.faulted = True
        return answer


class BankProgram:
    name = "bank"
    sells_offline = True      # the acquirer authorizes: bank cards sell while the registry is away

    def __init__(self, setup: BankSetup) -> None:
        self.setup = setup
        self.acquirer = Acquirer(setup)

    def start(self) -> None:
        self.setup.forwarder.start()

    def close(self) -> None:
        self.setup.forwarder.stop()
        for part in (*self.setup.parts, self.setup.saf):
            try:
                part.close()
            except Exception:   # shutting down: close what can be closed
                log.exception("closing a bank part failed")

    # -- card in -> grant ----------------------------------------------------------------------------
    def claim(self, card: CardIn) -> Claim | Decline | None:
        if not isinstance(card, (ChipCard, DeadChip, Swipe)):
            return None
        if not self.setup.keys_left():
            log.error("DUKPT keys exhausted: bank card refused until the PIN pad is re-keyed")
            return Decline(DeclineReason.NOT_ACCEPTED, Screen.CARD_NOT_ACCEPTED)
        if isinstance(card, DeadChip) and not self.setup.magstripe:
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)
        return Claim(self, card)

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        prompts = Prompts(steps.port, home=self.setup.home_language, after_pin=self.setup.after_pin,
                          keys_left=self.setup.keys_left, pin_format=self.setup.dialect.pin_block)
        card = claim.card
        if isinstance(card, Swipe):
            return self._swiped(card.track, steps, prompts, chip_failed=False, pump=None)
        if isinstance(card, DeadChip):
            return self._fallback(steps, prompts, None)
        return self._chip(card, steps, prompts)

    def _chip(self, card: ChipCard, steps: SaleSteps, prompts: Prompts) -> Grant | Decline:
        pump = steps.choose_pump()
        steps.port.show(Screen.PROCESSING)
        chip = _ChipWatch(card.reader)
        try:
            result = run_transaction(
                chip, self.setup.emv, self.setup.preauth_cents, pin_entry=prompts.pin_entry, online=True,
                choose=prompts.choose_app, now=steps.now().replace(tzinfo=None), on_select=prompts.language)
        except CardRemoved:
            return Decline(DeclineReason.CARD_REMOVED, Screen.CARD_REMOVED)
        except CardError as exc:
            log.warning("chip transaction failed", extra={"error": str(exc)})
            if isinstance(exc, CardNotAccepted) and not chip.faulted:
                # a sound chip (or a blocked one) without a sale for us
                return Decline(DeclineReason.NOT_ACCEPTED, Screen.CARD_NOT_ACCEPTED)
            if prompts.selected:                    # EMV: no fallback once an application was selected
                return Decline(DeclineReason.CHIP_ERROR)
            return self._fallback(steps, prompts, pump)
        steps.begin(pump, result.pan)
        if result.decision != "online":
            # floor limit 0: the kernel always asks for an ARQC, so only a card's own AAC lands here
            return Decline(DeclineReason.CARD_DECLINED, data=summary(
                result, None, None, entry_mode=CHIP, preauth_cents=self.setup.preauth_cents).to_doc())
        iso_card = iso.Card(pan=result.pan, expiry=result.expiry, entry_mode=CHIP,
                            pan_sequence=result.pan_sequence)
        return self.acquirer.authorize(steps, pump, iso_card, result, prompts)

    def _fallback(self, steps: SaleSteps, prompts: Prompts, pump: int | None) -> Grant | Decline:
        """The chip failed technically: ask for a swipe (EMV fallback, entry mode 80, online PIN)."""
        if not self.setup.magstripe:
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)
        try:
            track = steps.port.swipe()
        except CardError as exc:
            log.warning("swipe unreadable", extra={"error": str(exc)})
            return Decline(DeclineReason.CARD_ERROR, Screen.CARD_ERROR)
        return self._swiped(track, steps, prompts, chip_failed=True, pump=pump)

    def _swiped(self, track: Track2, steps: SaleSteps, prompts: Prompts, *, chip_failed: bool,
                pump: int | None) -> Grant | Decline:
        try:
            mode = entry_mode_for_swipe(track, chip_tried_and_failed=chip_failed)
        except CardNotAccepted:
            return Decline(DeclineReason.NOT_ACCEPTED, Screen.INSERT_CHIP)
        if expired(track, steps.now().date()):
            return Decline(DeclineReason.CARD_EXPIRED)
        if not sells_goods(track.service_code):
            return Decline(DeclineReason.NOT_ACCEPTED)
        pump = pump or steps.choose_pump()
        block = prompts.online_pin(track.pan)     # the port raises SaleCancelled on CANCEL or timeout
        steps.begin(pump, track.pan)
        card = iso.Card(pan=track.pan, expiry=track.expiry, entry_mode=mode, track2=track.raw)
        return self.acquirer.authorize(steps, pump, card, None, prompts, pin_block=block)

    # -- pump done -> advice -------------------------------------------------------------------------
    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        """Queue the completion (or, nothing charged, the reversal) once; called before the journal
        marks the sale completed, so a crash in between re-runs it and finds it already queued."""
        saf = self.setup.saf
        raw = saf.held(sale.id)
        if raw is None:
            if not saf.has_advice(sale.id):
                log.error("bank sale has no card context; nothing to send", extra={"sale_id": sale.id})
                return ("advice_not_sent",)
            return ()
        self.acquirer.final_advice(sale.id, CardContext.loads(raw), charged_cents, sale)
        return ()

    def recover(self, sale: SaleRecord) -> Decline:
        """A sale stopped while authorizing may hold an approval: give it back (0420, reason 68)."""
        saf = self.setup.saf
        try:
            raw = saf.held(sale.id)
            if raw is None:       # its advice (or nothing) was already settled before the crash
                return Decline(DeclineReason.INTERRUPTED)
            if sale.state is SaleState.AUTHORIZING:
                self.acquirer.reverse(sale.id, CardContext.loads(raw), iso.ReversalReason.TIMEOUT)
                return Decline(DeclineReason.HOST_TIMEOUT)
            saf.drop(sale.id)     # never sent
        except (SyncError, JournalError, MessageError) as exc:
            log.error("bank sale not recovered; see the attendant",
                      extra={"sale_id": sale.id, "error": type(exc).__name__})
            raise
        return Decline(DeclineReason.INTERRUPTED)

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        return bank_receipt_for(sale, head)


