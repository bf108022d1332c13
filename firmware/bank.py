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

from firmware.acquirer import messages as iso
from firmware.acquirer.saf import Exchanger, StoreAndForward
from firmware.bank_advice import AdviceForwarder, CardContext, Stan, build_final_advice
from firmware.cards import card_token, mask_pan
from firmware.emv import (
    CandidateList,
    EmvConfig,
    EmvFinal,
    EmvResult,
    IssuerResponse,
    PinInput,
    choose_language,
    complete,
    run_transaction,
)
from firmware.emv.select import Candidate, SelectedApp
from firmware.errors import (
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
from firmware.journal import SaleRecord
from firmware.magstripe import Track2, entry_mode_for_swipe, expired

if TYPE_CHECKING:
    from firmware.sale import SaleFlow

__all__ = ["BankSale", "BankSetup", "cvm_text", "entry_text"]

log = logging.getLogger(__name__)

CHIP = "051"      # ISO 8583:1987 field 22: ICC read, PIN entry capability
_DECLINE_REASONS = {"05": "do_not_honour", "51": "insufficient_funds", "54": "expired_card",
                    "55": "incorrect_pin", "75": "pin_tries_exceeded", "14": "not_accepted"}


class DukptPad(Protocol):
    def read_dukpt_pin_block(self, pan: str, timeout: float,
                             on_digits: Callable[[int], None] = ...) -> tuple[bytes, bytes]: ...
    def read_offline_pin(self, timeout: float, on_digits: Callable[[int], None] = ...) -> bytearray: ...


class Swipes(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None: ...
    def flush(self) -> None: ...


@dataclass
class BankSetup:
    emv: EmvConfig
    terminal: iso.Terminal
    link: Exchanger                      # the pre-authorization connection
    saf: StoreAndForward
    forwarder: AdviceForwarder
    pinpad: DukptPad
    msr: Swipes | None
    preauth_cents: int
    response_timeout: float
    after_pin: Callable[[], None] = lambda: None     # persists the DUKPT counter before the block is sent


def entry_text(mode: str) -> str:
    return {"051": "Chip", "801": "Magstripe fallback", "901": "Magstripe"}.get(mode, mode)


def cvm_text(results: str) -> str:
    """9F34 in words (Book 3 Annex C1/C3): method and result."""
    if results == "online_pin":          # a swiped card: the PIN went to the acquirer
        return "Online PIN"
    if len(results) != 6 or any(c not in "0123456789abcdefABCDEF" for c in results):
        return "-"
    method, outcome = int(results[:2], 16) & 0x3F, results[4:]
    name = {0x01: "PIN verified by card", 0x02: "PIN verified online", 0x04: "PIN verified by card",
            0x1F: "No CVM", 0x3F: "No CVM performed"}.get(method, f"CVM {method:02X}")
    return name + (" (failed)" if outcome == "01" else "")


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


class _OfflinePin:
    def __init__(self, sale: BankSale, last_try: bool) -> None:
        self.sale, self.last_try = sale, last_try

    def plain_pin_block_for_card(self) -> bytearray:
        return self.sale.read_offline_pin(self.last_try)


class BankSale:
    def __init__(self, flow: SaleFlow, setup: BankSetup) -> None:
        self.flow, self.setup = flow, setup
        self.stan = Stan(lambda: flow.journal.get_value("acquirer_stan"),
                         lambda v: flow.journal.put("acquirer_stan", v))
        self._ksn: bytes | None = None
        self._selected = False       # an application was final-selected: no magstripe fallback after that

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
        try:
            return sale()
        except SaleCancelled:
            panel.show("remove_card")
            return None
        finally:
            panel.set_language(self.flow.language)

    def _chip(self) -> str | None:
        panel = self.flow.dev.panel
        pump = self.flow.choose_pump()
        if pump is None:
            raise SaleCancelled("no pump chosen")
        panel.show("processing")
        if not self.flow.pump_nozzles(pump):
            panel.show("declined", reason="pump_unknown")
            return None
        self._ksn = None
        self._selected = False
        chip = _ChipWatch(self.flow.dev.reader)
        try:
            result = run_transaction(
                chip, self.setup.emv, self.setup.preauth_cents, pin_entry=self._pin_entry,
                online=True, choose=self._choose_app, now=dt.datetime.now(), on_select=self._language)
        except CardRemoved:
            panel.show("card_removed")
            return None
        except PinPadError:
            raise SaleCancelled("PIN entry cancelled") from None
        except CardError as exc:
            log.warning("chip transaction failed", extra={"error": str(exc)})
            if isinstance(exc, CardNotAccepted) and not chip.faulted:
                panel.show("card_not_accepted")     # a sound chip without a payment application we take
                return None
            if self._selected or exc.context.get("sw") == "6A81":
                # EMV: no fallback once an application was selected, nor for a blocked card
                panel.show("declined", reason="chip_error")
                return None
            return self._fallback(pump)
        sale_id = self._begin(pump, result.pan)
        if result.decision != "online":
            # floor limit 0: the kernel always asks for an ARQC, so only a card's own AAC lands here
            self.flow.journal.transition(sale_id, "declined", reason="card_declined",
                                         bank=self._summary(result, None, None))
            panel.show("declined", reason="card_declined")
            return sale_id
        card = iso.Card(pan=result.pan, expiry=result.expiry, entry_mode=CHIP, pan_sequence=result.pan_sequence)
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
        pump = pump or self.flow.choose_pump()
        if pump is None:
            raise SaleCancelled("no pump chosen")
        if not self.flow.pump_nozzles(pump):
            panel.show("declined", reason="pump_unknown")
            return None
        self._ksn = None
        try:
            block = self._online_pin(track.pan)
        except PinPadError:
            raise SaleCancelled("PIN entry cancelled") from None
        sale_id = self._begin(pump, track.pan)
        card = iso.Card(pan=track.pan, expiry=track.expiry, entry_mode=mode, track2=track.raw)
        return self._authorize(sale_id, pump, card, None, pin_block=block)

    def _begin(self, pump: int, pan: str) -> str:
        sale_id = str(uuid.uuid4())
        self.flow.journal.begin_sale(sale_id, pump, mask_pan(pan), card_token(self.flow.token_key, pan), kind="bank")
        return sale_id

    # -- the host ----------------------------------------------------------------------------------
    def _authorize(self, sale_id: str, pump: int, card: iso.Card, result: EmvResult | None, *,
                   pin_block: bytes | None = None) -> str:
        flow, panel, saf = self.flow, self.flow.dev.panel, self.setup.saf
        nozzles = flow.pump_nozzles(pump)
        stan = self.stan.next()
        now = dt.datetime.now().astimezone()      # fields 12/13 local, field 7 in UTC
        block = result.online_pin_block if result is not None else pin_block
        try:
            request = iso.preauth_request(
                terminal=self.setup.terminal, card=card, amount=self.setup.preauth_cents, stan=stan, when=now,
                icc_tlv=result.icc_data if result else None, pin_block=block, ksn=self._ksn if block else None,
                pump=pump)
        except MessageError as exc:       # card data that no acquirer message can carry: nothing was sent
            log.warning("card data does not fit the pre-authorization", extra={"sale_id": sale_id,
                                                                               "error": str(exc)})
            flow.journal.transition(sale_id, "declined", reason="chip_error")
            panel.show("declined", reason="chip_error")
            return sale_id
        ctx = CardContext(pan=card.pan, expiry=card.expiry, entry_mode=card.entry_mode,
                          pan_sequence=card.pan_sequence, pump=pump, requested=self.setup.preauth_cents,
                          stan=f"{stan:06d}", transmission=iso.decode(request)["7"],
                          icc=result.icc_data.hex() if result else "")
        saf.hold(sale_id, ctx.dumps())        # before the 0100 leaves: a crash after it can still reverse
        flow.journal.transition(sale_id, "authorizing", bank=self._summary(result, None, None, card=card))
        panel.show("authorizing")
        try:
            answer = iso.parse_preauth_response(self.setup.link.exchange(request, self.setup.response_timeout))
        except HostUnreachable as exc:
            log.warning("acquirer unreachable", extra={"sale_id": sale_id, "error": str(exc)})
            return self._host_failed(sale_id, result, card, reversal=False)
        except (HostUnavailable, MessageError) as exc:
            log.warning("no usable answer from the acquirer", extra={"sale_id": sale_id, "error": str(exc)})
            return self._host_failed(sale_id, result, card, reversal=True)
        if answer.approved:
            # held before the card is asked: a crash from here on reverses the right approval
            ctx.approved = min(answer.approved_amount, self.setup.preauth_cents)
            ctx.rrn, ctx.auth_code = answer.rrn, answer.auth_code
            saf.hold(sale_id, ctx.dumps())
        final = self._second_ac(result, answer)
        summary = self._summary(result, final, answer, card=card)
        if not answer.approved:
            saf.drop(sale_id)
            reason = _DECLINE_REASONS.get(answer.response_code, "do_not_honour")
            flow.journal.transition(sale_id, "declined", reason=reason, bank=summary)
            panel.show("declined", reason=reason)
            return sale_id
        if final is not None:
            ctx.icc = final.icc_data.hex()
        if result is not None and (final is None or not final.approved):
            # the host approved but the card refused (or left): give the hold back
            reason = "card_removed" if final is None else "card_declined"
            self._reverse(sale_id, ctx, iso.ReversalReason.CARD_DECLINED)
            flow.journal.transition(sale_id, "declined", reason=reason, bank=summary)
            panel.show("card_removed" if final is None else "declined", reason=reason)
            return sale_id
        saf.hold(sale_id, ctx.dumps())
        flow.journal.transition(sale_id, "approved", auth_id=answer.auth_code, allowed_cents=ctx.approved,
                                nozzles=nozzles, bank=summary)
        if answer.partial:
            panel.show("approved_up_to", amount=flow.money(ctx.approved), pump=pump)
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

    def _host_failed(self, sale_id: str, result: EmvResult | None, card: iso.Card, *, reversal: bool) -> str:
        final = None
        if result is not None:
            try:   # close the card session: Z3, unable to go online, declined; the card answers an AAC
                final = complete(result, IssuerResponse(arc=b"Z3"))
            except CardError:
                pass
        reason = "host_timeout" if reversal else "host_unavailable"
        ctx_raw = self.setup.saf.held(sale_id)
        if reversal and ctx_raw is not None:
            self._reverse(sale_id, CardContext.loads(ctx_raw), iso.ReversalReason.TIMEOUT)
        else:
            self.setup.saf.drop(sale_id)
        self.flow.journal.transition(sale_id, "declined", reason=reason,
                                     bank=self._summary(result, final, None, card=card))
        self.flow.dev.panel.show("declined", reason=reason)
        return sale_id

    def _reverse(self, sale_id: str, ctx: CardContext, reason: iso.ReversalReason) -> None:
        kind, raw = build_final_advice(ctx, terminal=self.setup.terminal, dispensed=0, stan=self.stan.next(),
                                       when=dt.datetime.now(dt.UTC), reason=reason)
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
                                          dispensed=amount_cents, stan=self.stan.next(), when=dt.datetime.now(dt.UTC))
        self.setup.saf.settle(kind, rec.id, advice)
        log.info("bank advice queued", extra={"sale_id": rec.id, "kind": kind.value})
        self.setup.forwarder.kick()

    def recover(self) -> list[str]:
        """After a restart: a sale stopped while authorizing may hold an approval: reverse it."""
        done = []
        held = self.setup.saf.held_sales()
        for sale_id in held:
            try:
                self._recover_one(sale_id)
                done.append(sale_id)
            except (SyncError, JournalError, MessageError) as exc:   # one damaged row must not stop the rest
                log.error("bank sale not recovered; see the attendant", extra={"sale_id": sale_id,
                                                                               "error": type(exc).__name__})
        for rec in self.flow.journal.sales_in("created", "authorizing"):
            if rec.kind == "bank" and rec.id not in held:
                # its advice (or nothing) was already settled before the crash: close the row
                self.flow.journal.transition(rec.id, "declined", reason="interrupted", recovered=True)
                done.append(rec.id)
        return done

    def _recover_one(self, sale_id: str) -> None:
        rec = self.flow.journal.get(sale_id)
        raw = self.setup.saf.held(sale_id)
        if raw is None or rec.state not in ("created", "authorizing", "declined"):
            return     # approved and later: the pump part settles it
        if rec.state == "authorizing":      # the 0100 may have been approved: give the hold back
            self._reverse(sale_id, CardContext.loads(raw), iso.ReversalReason.TIMEOUT)
            self.flow.journal.transition(sale_id, "declined", reason="host_timeout", recovered=True)
        else:                               # never sent ("created"), or declined by the host
            self.setup.saf.drop(sale_id)
            if rec.state == "created":
                self.flow.journal.transition(sale_id, "declined", reason="interrupted", recovered=True)

    # -- cardholder prompts --------------------------------------------------------------------------
    def _language(self, app: SelectedApp) -> None:
        self._selected = True
        panel = self.flow.dev.panel
        panel.set_language(choose_language(app.language, panel.languages, self.flow.language))

    def _choose_app(self, candidates: CandidateList) -> Candidate | None:
        panel = self.flow.dev.panel
        apps = candidates.candidates[:9]
        panel.flush_keys()
        panel.show("choose_app", apps="  ".join(f"{i} {c.display_name}" for i, c in enumerate(apps, 1)))
        deadline = time.monotonic() + self.flow.timeouts.pin_entry
        while time.monotonic() < deadline:
            key = panel.read_key(0.5)
            if key == "CANCEL":
                raise SaleCancelled("application choice cancelled")
            if key == "ENTER" and len(apps) == 1:
                return apps[0]
            if key is not None and key.isdigit() and 1 <= int(key) <= len(apps):
                panel.show("processing")
                return apps[int(key) - 1]
        raise SaleCancelled("no application chosen")

    def _pin_entry(self, kind: str, tries: int | None, pan: str) -> PinInput:
        if kind == "online":
            return PinInput(online_block=self._online_pin(pan))
        return PinInput(offline=_OfflinePin(self, tries == 1))

    def _online_pin(self, pan: str) -> bytes:
        panel = self.flow.dev.panel
        panel.flush_keys()
        panel.show("enter_pin", stars="")
        ksn, block = self.setup.pinpad.read_dukpt_pin_block(
            pan, self.flow.timeouts.pin_entry, lambda n: panel.show("enter_pin", stars="*" * n))
        self.setup.after_pin()
        self._ksn = ksn
        panel.show("processing")
        return block

    def read_offline_pin(self, last_try: bool) -> bytearray:
        panel = self.flow.dev.panel
        screen = "enter_pin_last" if last_try else "enter_pin"
        panel.flush_keys()
        panel.show(screen, stars="")
        block = self.setup.pinpad.read_offline_pin(self.flow.timeouts.pin_entry,
                                                   lambda n: panel.show(screen, stars="*" * n))
        panel.show("processing")
        return block

    # -- journal summary ---------------------------------------------------------------------------
    def _summary(self, result: EmvResult | None, final: EmvFinal | None, answer: iso.PreauthResult | None,
                 *, card: iso.Card | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"entry_mode": card.entry_mode if card else CHIP,
                               "preauth_cents": self.setup.preauth_cents}
        if result is not None:
            out.update(aid=result.aid.hex().upper(), app_label=result.app_label or result.preferred_name,
                       cvm_results=result.cvm_results.hex().upper(), oda=result.oda_method,
                       cryptogram=result.cryptogram.name, tvr=result.tvr.hex().upper(),
                       tsi=result.tsi.hex().upper(), language=result.language)
        else:
            out.update(cvm_results="online_pin")
        if final is not None:
            out.update(tvr=final.tvr.hex().upper(), tsi=final.tsi.hex().upper(),
                       arc=final.arc.decode("ascii", "replace"), cryptogram=final.cryptogram.name,
                       issuer_authenticated=final.issuer_authenticated)
        if answer is not None:
            out.update(response_code=answer.response_code, auth_code=answer.auth_code, rrn=answer.rrn,
                       approved_cents=answer.approved_amount, partial=answer.partial)
        return out

