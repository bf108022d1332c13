"""The bank sale's conversation with the acquirer: the 0100 pre-authorization, the second GENERATE AC
with the 0110, and the final 0220 completion or 0420 reversal queued for the advice forwarder.

Order of durable writes, so that a crash anywhere leaves money counted once:
  card context held (encrypted) -> journal authorizing -> 0100 sent -> 0110 -> approval added to the
  context -> second GENERATE AC -> grant (the sale machine journals approved and releases the pump) or
  decline (reversal queued first when the bank approved).
A sale found "authorizing" after a restart may have been approved by the host: it is reversed (0420,
reason 68). Card data stays in the encrypted context; the journal keeps the masked PAN, a token and
the summary (AID, TVR, TSI, ARC, CVM), never the PAN, track 2 or a PIN block.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from contracts.errors import CardError, HostUnavailable, HostUnreachable, MessageError
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.acquirer import messages as iso
from firmware.emv import EmvFinal, EmvResult, IssuerResponse, complete
from firmware.programs.bank.advice import CardContext, Sold, build_final_advice
from firmware.programs.bank.prompts import Prompts
from firmware.programs.bank.summary import summary
from firmware.programs.base import Decline, Grant, SaleSteps
from firmware.sale.record import Preset, SaleRecord

if TYPE_CHECKING:
    from firmware.programs.bank.program import BankSetup

__all__ = ["Acquirer"]

log = logging.getLogger(__name__)

# ISO 8583:1987 field 39 codes and the reason the cardholder is shown
_DECLINE_REASONS = {"05": DeclineReason.DO_NOT_HONOUR, "51": DeclineReason.INSUFFICIENT_FUNDS,
                    "54": DeclineReason.CARD_EXPIRED, "55": DeclineReason.WRONG_PIN,
                    "75": DeclineReason.PIN_TRIES_EXCEEDED, "14": DeclineReason.NOT_ACCEPTED}

Record = Callable[[EmvFinal | None, iso.PreauthResult | None], dict[str, Any]]


class Acquirer:
    def __init__(self, setup: BankSetup) -> None:
        self.setup = setup

    def authorize(self, steps: SaleSteps, pump: int, card: iso.Card, result: EmvResult | None,
                  prompts: Prompts, *, pin_block: bytes | None = None) -> Grant | Decline:
        setup, saf = self.setup, self.setup.saf
        preauth = setup.preauth_cents
        sale_id = steps.sale_id
        if sale_id is None:
            raise ValueError("authorize before begin")

        def record(final: EmvFinal | None, answer: iso.PreauthResult | None) -> dict[str, Any]:
            return summary(result, final, answer, entry_mode=card.entry_mode, preauth_cents=preauth).to_doc()

        stan = setup.stan.next()
        block = result.online_pin_block if result is not None else pin_block
        try:
            request = iso.preauth_request(
                terminal=setup.terminal, card=card, amount=preauth, stan=stan, when=steps.now(),
                icc_tlv=result.icc_data if result else None, pin_block=block,
                ksn=prompts.ksn if block else None, pump=pump, dialect=setup.dialect)
        except MessageError as exc:       # card data that no acquirer message can carry: nothing was sent
            log.warning("card data does not fit the pre-authorization", extra={"sale_id": sale_id,
                                                                               "error": str(exc)})
            return Decline(DeclineReason.CARD_ERROR, data=record(None, None))
        ctx = CardContext(pan=card.pan, expiry=card.expiry, entry_mode=card.entry_mode,
                          pan_sequence=card.pan_sequence, pump=pump, requested=preauth,
                          stan=f"{stan:06d}", transmission=iso.decode(request, setup.dialect)["7"],
                          icc=result.icc_data.hex() if result else "")
        saf.hold(sale_id, ctx.dumps())        # before the 0100 leaves: a crash after it can still reverse
        steps.authorizing(record(None, None))
        steps.port.show(Screen.AUTHORIZING)
        try:
            answer = iso.parse_preauth_response(setup.link.exchange(request, setup.response_timeout),
                                                setup.dialect)
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
            return Decline(_DECLINE_REASONS.get(answer.response_code, DeclineReason.DO_NOT_HONOUR),
                           data=record(final, answer))
        if final is not None:
            ctx.icc = final.icc_data.hex()
        if result is not None and (final is None or not final.approved):
            # the host approved but the card refused (or left): give the hold back
            self.reverse(sale_id, ctx, iso.ReversalReason.CARD_DECLINED)
            if final is None:
                return Decline(DeclineReason.CARD_REMOVED, Screen.CARD_REMOVED, data=record(final, answer))
            return Decline(DeclineReason.CARD_DECLINED, data=record(final, answer))
        saf.hold(sale_id, ctx.dumps())
        station = steps.station()
        notice = ((Screen.APPROVED_UP_TO, {"amount_cents": ctx.approved, "currency": station.currency,
                                            "pump": pump})
                  if answer.partial else None)
        return Grant(Preset.amount(ctx.approved), nozzles=station.nozzles(pump),
                     reference=answer.auth_code or "", data=record(final, answer), notice=notice)

    def _second_ac(self, result: EmvResult | None, answer: iso.PreauthResult) -> EmvFinal | None:
        if result is None:
            return None
        try:
            return complete(result, IssuerResponse.from_icc_data(answer.response_code.encode(),
                                                                 answer.icc_response_tlv))
        except CardError as exc:
            log.warning("card left or failed at the second GENERATE AC", extra={"error": str(exc)})
            return None

    def _host_failed(self, sale_id: str, result: EmvResult | None, record: Record, *,
                     reversal: bool) -> Decline:
        final = None
        if result is not None:
            try:   # close the card session: Z3, unable to go online, declined; the card answers an AAC
                final = complete(result, IssuerResponse(arc=b"Z3"))
            except CardError:
                pass
        ctx_raw = self.setup.saf.held(sale_id)
        if reversal and ctx_raw is not None:
            self.reverse(sale_id, CardContext.loads(ctx_raw), iso.ReversalReason.TIMEOUT)
        else:
            self.setup.saf.drop(sale_id)
        reason = DeclineReason.HOST_TIMEOUT if reversal else DeclineReason.HOST_UNAVAILABLE
        return Decline(reason, data=record(final, None))

    def reverse(self, sale_id: str, ctx: CardContext, reason: iso.ReversalReason) -> None:
        self._queue(sale_id, ctx, 0, reason)

    def final_advice(self, sale_id: str, ctx: CardContext, charged_cents: int,
                     sale: SaleRecord | None = None) -> None:
        """The 0220 for what was charged (with the fuel the pump says was sold); the 0420 when nothing was."""
        sold = None if sale is None else Sold(sale.product, sale.volume_cl or 0, sale.price_milli or 0)
        self._queue(sale_id, ctx, charged_cents, None, sold)

    def _queue(self, sale_id: str, ctx: CardContext, amount: int, reason: iso.ReversalReason | None,
               sold: Sold | None = None) -> None:
        kind, raw = build_final_advice(ctx, terminal=self.setup.terminal, dispensed=amount,
                                       stan=self.setup.stan.next(), when=dt.datetime.now().astimezone(),
                                       reason=reason, sold=sold, dialect=self.setup.dialect)
        self.setup.saf.settle(kind, sale_id, raw)
        log.info("bank advice queued", extra={"sale_id": sale_id, "kind": kind.value})
        self.setup.forwarder.kick()
