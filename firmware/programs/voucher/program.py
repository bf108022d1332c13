"""The paper voucher program: a code typed at the idle screen (TypedCode), redeemed once network-wide by the
registry (voucher_redeem), then a sale of the voucher's litres on the nozzles of its product only, charged
nothing (the voucher paid). A sale that dispensed nothing gives the voucher back (voucher_release).

The code is sent sealed to its request (firmware.service_client) and kept nowhere in clear: the journal
holds its last four digits (the hint operators see), the request's id and, until the registry answers, the
code as sealed to that request (contracts.panseal: only the registry opens it). A request whose answer was
lost is asked again under the same id (after a timeout, or in recover() after a restart): the registry
answers the same request with the same voucher, so a lost answer never strands it. Once redeemed, the
journal holds the voucher's id; a release names the request that took it. The registry is asked only
online: a voucher is redeemed once network-wide, which only the registry can tell.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from contracts.cards import luhn_ok
from contracts.errors import HostUnavailable
from contracts.reasons import DeclineReason
from contracts.receipt import WIDTH, ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import CardIn, Claim, Decline, Grant, ReceiptHead, SaleSteps, TypedCode
from firmware.receipt import fleet_receipt
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord
from firmware.service_client import new_request_id
from firmware.station import Station
from ui.catalog import text

__all__ = ["CODE_DIGITS", "VOUCHER", "Lookup", "VoucherProgram", "masked"]

log = logging.getLogger(__name__)

# registry.vouchers.CODE_DIGITS: 18 random digits and a Luhn check digit (contracts.panseal seals at
# most 19 digits); tests/test_voucher_program.py holds the two equal
CODE_DIGITS = 19
VOUCHER = "voucher"              # the journaled voucher id, once the registry has redeemed it
REQUEST = "request"              # the voucher_redeem request's id, journaled before asking
SEALED = "code_sealed"           # the code sealed to that request, journaled until the registry answers
NOT_RELEASED = "voucher_not_released"    # a sale of nothing whose voucher the registry did not take back
UNAVAILABLE = Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)


class Lookup(Protocol):
    @property
    def online(self) -> bool: ...
    def seal_for_sale(self, number: str, sale_id: str) -> str: ...


class ServiceAsk(Protocol):
    """firmware.service_client.ServiceClient.ask."""

    def __call__(self, op: str, fields: Mapping[str, Any] | None = None, *, card: str | None = None,
                 medium: str = "chip", code: str | None = None, request_id: str | None = None) -> Any: ...


def masked(code: TypedCode) -> str:
    """The code as journaled and printed: stars and its hint (19 characters, the wire's card_masked).

    >>> masked(TypedCode("7077020000000000018"))
    '***************0018'
    """
    return "*" * (CODE_DIGITS - 4) + code.hint


def refused(reason: str) -> Decline:
    """A refusal shown with its text (voucher_refused.<reason>): used, expired, unknown, too many tries."""
    return Decline(DeclineReason.DO_NOT_HONOUR, Screen.VOUCHER_REFUSED, data={"shown": {"voucher": reason}})


def product_nozzles(station: Station, pump: int, product: str) -> tuple[int, ...]:
    """The pump's priced nozzles of one product."""
    return tuple(n for n in station.nozzles(pump) if station.product(pump, n)[0] == product)


class VoucherProgram:
    name = "voucher"
    prepaid = True                  # the sale charges nothing (firmware.sale.pumpwork)
    code_digits = CODE_DIGITS

    def __init__(self, host: Lookup, ask: ServiceAsk, *, language: str = "en") -> None:
        self.host, self.ask, self.language = host, ask, language

    def claim(self, card: CardIn) -> Claim | Decline | None:
        """A typed code; one of the wrong length or check digit is refused here, not counted against the
        terminal by the registry's brake."""
        if not isinstance(card, TypedCode):
            return None
        if len(card.code) != CODE_DIGITS or not luhn_ok(card.code):
            return refused("voucher_unknown")
        return Claim(self, card)

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        code: TypedCode = claim.card
        if not self.host.online:
            return UNAVAILABLE
        pump = steps.choose_pump()
        hint = masked(code)
        steps.begin(pump, hint, masked=hint)
        rid = new_request_id()
        sealed = self.host.seal_for_sale(code.code, rid)
        steps.authorizing({REQUEST: rid, SEALED: sealed})       # before asking: a restart asks again
        try:
            answer = self._redeem(pump, rid, sealed)
        except HostUnavailable as exc:
            # the registry may hold it redeemed under this request: the operator releases it by its hint
            log.error("voucher redeem unanswered twice", extra={"alarm": "voucher_unanswered", "card": hint,
                                                                 "error": str(exc)})
            return UNAVAILABLE
        if not answer.ok:
            return refused(answer.reason or "voucher_unknown")
        voucher, product = int(answer.result["voucher"]), str(answer.result["product"])
        steps.authorizing({VOUCHER: voucher, REQUEST: rid})     # a restart from here gives the voucher back
        nozzles = product_nozzles(steps.station(), pump, product)
        if not nozzles:
            self.release(voucher, rid)
            return Decline(DeclineReason.PRODUCT_NOT_ALLOWED, data={VOUCHER: voucher})
        return Grant(Preset.volume(int(answer.result["volume_cl"])), nozzles, reference=str(voucher),
                     data={VOUCHER: voucher, REQUEST: rid, "product": product}, product_asked=True)

    def _redeem(self, pump: int, rid: str, sealed: str) -> Any:
        """voucher_redeem under the journaled id; no answer in time: asked once more under the same id."""
        fields = {"pump": pump, SEALED: sealed}
        try:
            return self.ask("voucher_redeem", fields, request_id=rid)
        except HostUnavailable as exc:
            log.warning("voucher redeem unanswered: asking again", extra={"error": str(exc)})
            return self.ask("voucher_redeem", fields, request_id=rid)

    def release(self, voucher: int, request: str) -> bool:
        """Give a voucher back (only the request that took it can); False when the registry could not be
        asked (the operator releases it)."""
        try:
            answer = self.ask("voucher_release", {"voucher": voucher, "request": request})
        except HostUnavailable as exc:
            log.error("voucher not released: registry away", extra={"voucher": voucher, "error": str(exc)})
            return False
        if not answer.ok:       # released already (a settle run again after a restart), or never ours
            log.info("voucher release refused", extra={"voucher": voucher, "reason": answer.reason})
        return True

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        voucher, request = sale.data.get(VOUCHER), sale.data.get(REQUEST)
        if (isinstance(voucher, int) and isinstance(request, str) and not sale.volume_cl
                and not self.release(voucher, request)):
            return (NOT_RELEASED,)
        return ()

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        """Stopped while the registry was asked: a voucher it redeemed is completed with nothing dispensed,
        which releases it. Stopped before its answer came: the same request is asked again (the registry
        answers the voucher it took, if any, which is then given back the same way); still no answer: the
        sale is interrupted and logged (the operator releases the voucher by its hint)."""
        voucher, request, sealed = sale.data.get(VOUCHER), sale.data.get(REQUEST), sale.data.get(SEALED)
        if sale.state is not SaleState.AUTHORIZING:
            return Decline(DeclineReason.INTERRUPTED)
        if not isinstance(voucher, int) and isinstance(request, str) and isinstance(sealed, str):
            try:
                answer = self.ask("voucher_redeem", {"pump": sale.pump, SEALED: sealed}, request_id=request)
            except HostUnavailable:
                answer = None
            if answer is not None and answer.ok:
                voucher = int(answer.result["voucher"])
            elif answer is not None:         # the registry took nothing under this request
                return Decline(DeclineReason.INTERRUPTED)
        if isinstance(voucher, int) and isinstance(request, str):
            return Grant(Preset.volume(0), nozzles=(), reference=str(voucher),
                         data={VOUCHER: voucher, REQUEST: request, SEALED: None})
        log.warning("voucher sale interrupted before the registry answered",
                    extra={"sale_id": sale.id, "card": sale.card_masked})
        return Decline(DeclineReason.INTERRUPTED)

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        lines = fleet_receipt(**head.fields(), auth_id=sale.reference or "")
        # the fleet receipt's card and authorization lines (before the four of the tail) name the voucher
        lang = self.language
        lines[-6:-4] = [_pair(text(lang, "receipt.voucher"), head.card_masked),
                        _pair(text(lang, "receipt.voucher_no"), sale.reference or ""),
                        ReceiptLine(text(lang, "receipt.voucher_paid")[:WIDTH], bold=True)]
        return lines


def _pair(left: str, right: str) -> ReceiptLine:
    gap = max(1, WIDTH - len(left) - len(right))
    return ReceiptLine((left + " " * gap + right)[:WIDTH])
