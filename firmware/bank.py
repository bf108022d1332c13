"""The bank-card sale at an automated fuel dispenser: EMV chip (magstripe after a chip failure), online
pre-authorization for the most one filling may cost, the pump preset to the approved amount, then one
completion (or reversal) advice through the store-and-forward queue.

Order of durable writes, so that a crash anywhere leaves money counted once:
  card context held (encrypted) -> 0100 sent -> 0110 -> approval added to the context -> second
  GENERATE AC -> journal approved (pump released) or declined (reversal queued if the bank approved).
A sale found "authorizing" after a restart may have been approved by the host: it is reversed (0420,
reason 68). Card data stays in the encrypted context; the journal keeps the masked PAN, a token and
the EMV summary (AID, TVR, TSI, ARC, CVM), never the PAN, track 2 or a PIN block.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from contracts.cards import card_token, mask_pan
from contracts.errors import (
    CardError,
    CardNotAccepted,
    CardRemoved,
    HostUnavailable,
    HostUnreachable,
    JournalError,
    MessageError,
    PinPadError,
    SaleCancelled,
    SyncError,
)
from contracts.track2 import Track2
from firmware.acquirer import messages as iso
from firmware.acquirer.saf import Exchanger, StoreAndForward
from firmware.bank_advice import AdviceForwarder, CardContext, Stan, build_final_advice
from firmware.bank_prompts import Prompts
from firmware.bank_summary import CHIP, summary
from firmware.emv import EmvConfig, EmvFinal, EmvResult, IssuerResponse, complete, run_transaction
from firmware.journal import SaleRecord
from firmware.magstripe import entry_mode_for_swipe, expired, sells_goods

if TYPE_CHECKING:
    from firmware.sale import SaleFlow

__all__ = ["BankSale", "BankSetup"]

log = logging.getLogger(__name__)

_DECLINE_REASONS = {"05": "do_not_honour", "51": "insufficient_funds", "54": "expired_card",
                    "55": "incorrect_pin", "75": "pin_tries_exceeded", "14": "not_accepted"}


class Swipes(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class BankSetup:
    emv: EmvConfig
    terminal: iso.Terminal
    link: Exchanger                      # the pre-authorization connection
    saf: StoreAndForward
    forwarder: AdviceForwarder           # sends advices on its own connection
    prompts: Prompts
    msr: Swipes | None
    preauth_cents: int
    response_timeout: float
    parts: tuple[Closable, ...] = ()     # connections to close at shutdown, after the forwarder stops


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


class BankSale:
    def __init__(self, flow: SaleFlow, setup: BankSetup) -> None:
        self.flow, self.setup = flow, setup
        self.stan = Stan(lambda: flow.journal.get_value("acquirer_stan"),
                         lambda v: flow.journal.put("acquirer_stan", v))

    @property
    def accepting(self) -> bool:
        """False once the PIN pad's DUKPT keys are used up: queued advices still go out, new cards wait."""
        return self.setup.prompts.pinpad.dukpt_counter is not None

    def start(self) -> None:
        self.setup.forwarder.start()

    def close(self) -> None:
        self.setup.forwarder.stop()
        for part in (*self.setup.parts, self.setup.saf):
            try:
                part.close()
            except Exception:   # shutting down: close what can be closed
                log.exception("closing a bank part failed")

    # -- card in -> pump released -------------------------------------------------------------------
    def run(self, *, chip_failed: bool = False) -> str | None:
        """Serve the inserted card: the chip, or (chip_failed: no answer to reset) a fallback swipe."""
        return self._guarded(lambda: self._fallback() if chip_failed else self._chip())

    def run_swipe(self, track: Track2) -> str | None:
        """A card swiped at the idle screen: a chip card is sent to the chip, a stripe card is served."""
        return self._guarded(lambda: self._swiped(track, chip_failed=False, pump=None))

    def swiped(self) -> Track2 | None:
        """A swipe made at the idle screen, if any (never blocks); a garbled one is logged and dropped."""
        if self.setup.msr is None:
            return None
        try:
            return self.setup.msr.wait_swipe(0.0)
        except CardError as exc:
            log.warning("swipe unreadable", extra={"error": str(exc)})
            return None

    def _guarded(self, sale: Callable[[], str | None]) -> str | None:
        panel = self.flow.dev.panel
        if not self.accepting:
            log.error("DUKPT keys exhausted: bank card refused until the PIN pad is re-keyed")
            panel.show("card_not_accepted")
            return None
        self.setup.prompts.reset()
        try:
            return sale()
        except SaleCancelled:
            panel.show("remove_card")
            return None
        finally:
            self.setup.prompts.reset()
            if self.setup.msr is not None:
                self.setup.msr.flush()       # a swipe made during this sale must not start another

    def _pump(self) -> int | None:
        """The pump the driver picks (None: none free, none picked, or one without prices)."""
        pump = self.flow.choose_pump()
        if pump is not None and not self.flow.prices.nozzles(pump):
            self.flow.dev.panel.show("declined", reason="pump_unknown")
            return None
        return pump

    def _chip(self) -> str | None:
        panel, prompts = self.flow.dev.panel, self.setup.prompts
        pump = self._pump()
        if pump is None:
            return None
        panel.show("processing")
        chip = _ChipWatch(self.flow.dev.reader)
        try:
            result = run_transaction(
                chip, self.setup.emv, self.setup.preauth_cents, pin_entry=prompts.pin_entry, online=True,
                choose=prompts.choose_app, now=dt.datetime.now(), on_select=prompts.language)
        except CardRemoved:
            panel.show("card_removed")
            return None
        except PinPadError:
            raise SaleCancelled("PIN entry cancelled") from None
        except CardError as exc:
            log.warning("chip transaction failed", extra={"error": str(exc)})
            if isinstance(exc, CardNotAccepted) and not chip.faulted:
                panel.show("card_not_accepted")     # a sound chip (or a blocked one) without a sale for us
                return None
            if prompts.selected:                    # EMV: no fallback once an application was selected
                panel.show("declined", reason="chip_error")
                return None
            return self._fallback(pump)
        sale_id = self._begin(pump, result.pan)
        if result.decision != "online":
            # floor limit 0: the kernel always asks for an ARQC, so only a card's own AAC lands here
            self._decline(sale_id, "card_declined", summary(result, None, None, entry_mode=CHIP,
                                                            preauth_cents=self.setup.preauth_cents))
            return sale_id
        card = iso.Card(pan=result.pan, expiry=result.expiry, entry_mode=CHIP,
                        pan_sequence=result.pan_sequence)
        return self._authorize(sale_id, pump, card, result)

    def _fallback(self, pump: int | None = None) -> str | None:
        """The chip failed technically: ask for a swipe (EMV fallback, entry mode 80, online PIN)."""
        panel, msr = self.flow.dev.panel, self.setup.msr
        if msr is None:
            panel.show("card_error")
            return None
        msr.flush()
        panel.flush_keys()
        panel.show("swipe_card")
        deadline = time.monotonic() + self.flow.timeouts.pin_entry
        track = None
        while track is None:
            if time.monotonic() > deadline or panel.read_key(0.05) == "CANCEL":
                raise SaleCancelled("no swipe")
            try:
                track = msr.wait_swipe(0.25)
            except CardError as exc:
                log.warning("swipe unreadable", extra={"error": str(exc)})
                panel.show("card_error")
                return None
        return self._swiped(track, chip_failed=True, pump=pump)

    def _swiped(self, track: Track2, *, chip_failed: bool, pump: int | None) -> str | None:
        panel = self.flow.dev.panel
        try:
            mode = entry_mode_for_swipe(track, chip_tried_and_failed=chip_failed)
        except CardNotAccepted:
            panel.show("insert_chip")
            return None
        if expired(track, dt.date.today()):
            panel.show("declined", reason="expired_card")
            return None
        if not sells_goods(track.service_code):
            panel.show("declined", reason="not_accepted")
            return None
        pump = pump or self._pump()
        if pump is None:
            return None
        try:
            block = self.setup.prompts.online_pin(track.pan)
        except PinPadError:
            raise SaleCancelled("PIN entry cancelled") from None
        sale_id = self._begin(pump, track.pan)
        card = iso.Card(pan=track.pan, expiry=track.expiry, entry_mode=mode, track2=track.raw)
        return self._authorize(sale_id, pump, card, None, pin_block=block)

    def _begin(self, pump: int, pan: str) -> str:
        sale_id = str(uuid.uuid4())
        self.flow.journal.begin_sale(sale_id, pump, mask_pan(pan), card_token(self.flow.token_key, pan),
                                     kind="bank")
        return sale_id

    def _decline(self, sale_id: str, reason: str, bank: dict[str, Any], screen: str = "declined") -> str:
        self.flow.journal.transition(sale_id, "declined", reason=reason, bank=bank)
        self.flow.dev.panel.show(screen, reason=reason)
        return sale_id

    # -- the host ----------------------------------------------------------------------------------
    def _authorize(self, sale_id: str, pump: int, card: iso.Card, result: EmvResult | None, *,
                   pin_block: bytes | None = None) -> str:
        flow, panel, saf = self.flow, self.flow.dev.panel, self.setup.saf
        preauth = self.setup.preauth_cents

        def record(final: EmvFinal | None, answer: iso.PreauthResult | None) -> dict[str, Any]:
            return summary(result, final, answer, entry_mode=card.entry_mode, preauth_cents=preauth)

        stan = self.stan.next()
        now = dt.datetime.now().astimezone()      # fields 12/13 local, field 7 in UTC
        block = result.online_pin_block if result is not None else pin_block
        try:
            request = iso.preauth_request(
                terminal=self.setup.terminal, card=card, amount=preauth, stan=stan, when=now,
                icc_tlv=result.icc_data if result else None, pin_block=block,
                ksn=self.setup.prompts.ksn if block else None, pump=pump)
        except MessageError as exc:       # card data that no acquirer message can carry: nothing was sent
            log.warning("card data does not fit the pre-authorization", extra={"sale_id": sale_id,
                                                                               "error": str(exc)})
            return self._decline(sale_id, "card_error", record(None, None))
        ctx = CardContext(pan=card.pan, expiry=card.expiry, entry_mode=card.entry_mode,
                          pan_sequence=card.pan_sequence, pump=pump, requested=preauth,
                          stan=f"{stan:06d}", transmission=iso.decode(request)["7"],
                          icc=result.icc_data.hex() if result else "")
        saf.hold(sale_id, ctx.dumps())        # before the 0100 leaves: a crash after it can still reverse
        flow.journal.transition(sale_id, "authorizing", bank=record(None, None))
        panel.show("authorizing")
        try:
            answer = iso.parse_preauth_response(
                self.setup.link.exchange(request, self.setup.response_timeout))
        except HostUnreachable as exc:
            log.warning("acquirer unreachable", extra={"sale_id": sale_id, "error": str(exc)})
            return self._host_failed(sale_id, result, record, reversal=False)
        except (HostUnavailable, MessageError) as exc:
            log.warning("no usable answer from the acquirer", extra={"sale_id": sale_id, "error": str(exc)})
            return self._host_failed(sale_id, result, record, reversal=True)
        if answer.approved:
            # held before the card is asked: a crash from here on reverses the right approval
            ctx.approved = min(answer.approved_amount, preauth)
            ctx.rrn, ctx.auth_code = answer.rrn, answer.auth_code
            saf.hold(sale_id, ctx.dumps())
        final = self._second_ac(result, answer)
        if not answer.approved:
            saf.drop(sale_id)
            return self._decline(sale_id, _DECLINE_REASONS.get(answer.response_code, "do_not_honour"),
                                 record(final, answer))
        if final is not None:
            ctx.icc = final.icc_data.hex()
        if result is not None and (final is None or not final.approved):
            # the host approved but the card refused (or left): give the hold back
            self._reverse(sale_id, ctx, iso.ReversalReason.CARD_DECLINED)
            if final is None:
                return self._decline(sale_id, "card_removed", record(final, answer), screen="card_removed")
            return self._decline(sale_id, "card_declined", record(final, answer))
        saf.hold(sale_id, ctx.dumps())
        flow.journal.transition(sale_id, "approved", auth_id=answer.auth_code, allowed_cents=ctx.approved,
                                nozzles=flow.prices.nozzles(pump), bank=record(final, answer))
        if answer.partial:
            panel.show("approved_up_to", amount=flow.prices.money(ctx.approved), pump=pump)
            time.sleep(1.5)   # let the driver read the lower limit before the pump prompt replaces it
        flow.dispense(flow.journal.get(sale_id))
        return sale_id

    def _second_ac(self, result: EmvResult | None, answer: iso.PreauthResult) -> EmvFinal | None:
        if result is None:
            return None
        try:
            return complete(result, IssuerResponse.from_icc_data(answer.response_code.encode(),
                                                                 answer.icc_response_tlv))
        except CardError as exc:
            log.warning("card left or failed at the second GENERATE AC", extra={"error": str(exc)})
            return None

    def _host_failed(self, sale_id: str, result: EmvResult | None,
                     record: Callable[[EmvFinal | None, None], dict[str, Any]], *, reversal: bool) -> str:
        final = None
        if result is not None:
            try:   # close the card session: Z3, unable to go online, declined; the card answers an AAC
                final = complete(result, IssuerResponse(arc=b"Z3"))
            except CardError:
                pass
        ctx_raw = self.setup.saf.held(sale_id)
        if reversal and ctx_raw is not None:
            self._reverse(sale_id, CardContext.loads(ctx_raw), iso.ReversalReason.TIMEOUT)
        else:
            self.setup.saf.drop(sale_id)
        return self._decline(sale_id, "host_timeout" if reversal else "host_unavailable", record(final, None))

    def _reverse(self, sale_id: str, ctx: CardContext, reason: iso.ReversalReason) -> None:
        kind, raw = build_final_advice(ctx, terminal=self.setup.terminal, dispensed=0, stan=self.stan.next(),
                                       when=dt.datetime.now().astimezone(), reason=reason)
        self.setup.saf.settle(kind, sale_id, raw)
        self.setup.forwarder.kick()

    # -- pump done -> advice -------------------------------------------------------------------------
    def finish(self, rec: SaleRecord, amount_cents: int) -> None:
        """Queue the completion (or, nothing dispensed, the reversal) once; called before the journal
        marks the sale completed, so a crash in between re-runs it and finds it already queued."""
        raw = self.setup.saf.held(rec.id)
        if raw is None:
            if not self.setup.saf.has_advice(rec.id):
                log.error("bank sale has no card context; nothing to send", extra={"sale_id": rec.id})
            return
        kind, advice = build_final_advice(CardContext.loads(raw), terminal=self.setup.terminal,
                                          dispensed=amount_cents, stan=self.stan.next(),
                                          when=dt.datetime.now().astimezone())
        self.setup.saf.settle(kind, rec.id, advice)
        log.info("bank advice queued", extra={"sale_id": rec.id, "kind": kind.value})
        self.setup.forwarder.kick()

    def needs_recovery(self) -> bool:
        """A card context is held with no sale running: an interrupted authorization may hold money."""
        return any(self.flow.journal.get(s).state in ("created", "authorizing")
                   for s in self.setup.saf.held_sales())

    def recover(self) -> list[str]:
        """After a restart (or a failed sale): a sale stopped while authorizing may hold an approval."""
        done = []
        held = self.setup.saf.held_sales()
        for sale_id in held:
            try:
                if self._recover_one(sale_id):
                    done.append(sale_id)
            except (SyncError, JournalError, MessageError) as exc:   # one damaged row must not stop the rest
                log.error("bank sale not recovered; see the attendant",
                          extra={"sale_id": sale_id, "error": type(exc).__name__})
        for rec in self.flow.journal.sales_in("created", "authorizing"):
            if rec.kind == "bank" and rec.id not in held:
                # its advice (or nothing) was already settled before the crash: close the row
                self.flow.journal.transition(rec.id, "declined", reason="interrupted", recovered=True)
                done.append(rec.id)
        return done

    def _recover_one(self, sale_id: str) -> bool:
        rec = self.flow.journal.get(sale_id)
        raw = self.setup.saf.held(sale_id)
        if raw is None or rec.state not in ("created", "authorizing", "declined"):
            return False     # approved and later: the pump part settles it
        if rec.state == "authorizing":      # the 0100 may have been approved: give the hold back
            self._reverse(sale_id, CardContext.loads(raw), iso.ReversalReason.TIMEOUT)
            self.flow.journal.transition(sale_id, "declined", reason="host_timeout", recovered=True)
        else:                               # never sent ("created"), or declined by the host
            self.setup.saf.drop(sale_id)
            if rec.state == "created":
                self.flow.journal.transition(sale_id, "declined", reason="interrupted", recovered=True)
        return True
