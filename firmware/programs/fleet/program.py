"""The fleet card program: claim a card with the fleet application, ask for the PIN, let the registry
decide (card status, products at this pump, the wallet's litres) and preset the pump by volume.

The request id is journaled (state authorizing) before the registry is asked, and the registry keys the
hold it grants by it (its authorization id is the request id). A restart that finds the sale still
authorizing, its answer lost, closes that hold as a sale with nothing dispensed, instead of leaving the
wallet's litres held until the registry lets them lapse.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from contracts.errors import CardNotAccepted, HostUnavailable
from contracts.messages import AuthAnswer
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import CardIn, ChipCard, Claim, Decline, Grant, ReceiptHead, SaleSteps
from firmware.programs.fleet.card import FleetCardData, read_fleet_card
from firmware.receipt import fleet_receipt
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord

__all__ = ["REQUEST", "FleetProgram", "Registry"]

log = logging.getLogger(__name__)

REQUEST = "registry_request"     # the journaled request id, which the registry keys its hold by


class Registry(Protocol):
    """The registry's authorization service (firmware.hostlink.HostLink)."""
    @property
    def online(self) -> bool: ...
    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int,
                  request_id: str | None = None) -> AuthAnswer: ...


class FleetProgram:
    name = "fleet"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def claim(self, card: CardIn) -> Claim | Decline | None:
        if not isinstance(card, ChipCard):
            return None
        try:
            data = read_fleet_card(card.reader)
        except CardNotAccepted:
            return None
        return Claim(self, data)

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        card: FleetCardData = claim.card
        if card.expired(steps.now().date()):
            return Decline(DeclineReason.CARD_EXPIRED)
        if not self.registry.online:
            return Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)
        pump = steps.choose_pump()
        pin_block = steps.port.pin_block(card.pan)
        steps.begin(pump, card.pan)
        request_id = str(uuid.uuid4())
        steps.authorizing({REQUEST: request_id})
        try:
            answer = self.registry.authorize(pan=card.pan, expiry=card.expiry, pin_block=pin_block, pump=pump,
                                             request_id=request_id)
        except HostUnavailable as exc:
            log.warning("authorization failed", extra={"error": str(exc)})
            return Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)
        finally:
            del pin_block
        if not answer.approved or answer.auth_id is None:
            # a wrong PIN: the tries the registry leaves before it blocks the card, for the declined screen
            tries = {} if answer.pin_tries_left is None else {"pin_tries_left": answer.pin_tries_left}
            return Decline(answer.reason or DeclineReason.DO_NOT_HONOUR, data=tries)
        # registry_auth: the sale settles against this authorization when it syncs
        return Grant(Preset.volume(answer.allowed_cl), nozzles=answer.nozzles, reference=answer.auth_id,
                     data={REQUEST: request_id, "registry_auth": answer.auth_id})

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        return ()      # the registry books it from the synced sale, once by its id

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        """Stopped while the registry was asked: it may hold litres under the request id. Use that hold
        for a sale the pump never served (the sale machine completes it with nothing dispensed), so the
        synced sale closes it. A registry that never approved stores it flagged, with nothing charged."""
        request_id = sale.data.get(REQUEST) if sale.state is SaleState.AUTHORIZING else None
        if not isinstance(request_id, str):
            return Decline(DeclineReason.INTERRUPTED)    # the registry was never asked
        return Grant(Preset.volume(0), nozzles=(), reference=request_id,
                     data={REQUEST: request_id, "registry_auth": request_id})

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        return fleet_receipt(**head.fields(), auth_id=sale.reference or "")
