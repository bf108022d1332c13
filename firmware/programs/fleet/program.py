"""The fleet card program: claim a card with the fleet application, ask for the PIN, let the registry
decide (card status, products at this pump, the wallet's litres) and preset the pump by volume."""

from __future__ import annotations

import logging
from typing import Protocol

from contracts.errors import CardNotAccepted, HostUnavailable
from contracts.messages import AuthAnswer
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import CardIn, ChipCard, Claim, Decline, Grant, ReceiptHead, SaleSteps
from firmware.programs.fleet.card import FleetCardData, read_fleet_card
from firmware.receipt import fleet_receipt
from firmware.sale.record import Preset, SaleRecord

__all__ = ["FleetProgram", "Registry"]

log = logging.getLogger(__name__)


class Registry(Protocol):
    """The registry's authorization service (firmware.hostlink.HostLink)."""
    @property
    def online(self) -> bool: ...
    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int) -> AuthAnswer: ...


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
        steps.authorizing()
        try:
            answer = self.registry.authorize(pan=card.pan, expiry=card.expiry, pin_block=pin_block, pump=pump)
        except HostUnavailable as exc:
            log.warning("authorization failed", extra={"error": str(exc)})
            return Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)
        finally:
            del pin_block
        if not answer.approved or answer.auth_id is None:
            return Decline(answer.reason or DeclineReason.DO_NOT_HONOUR)
        # registry_auth: the sale settles against this authorization when it syncs
        return Grant(Preset.volume(answer.allowed_cl), nozzles=answer.nozzles, reference=answer.auth_id,
                     data={"registry_auth": answer.auth_id})

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        return ()      # the registry books it from the synced sale, once by its id

    def recover(self, sale: SaleRecord) -> Decline:
        # the registry's reservation of an authorization never used lapses there
        return Decline(DeclineReason.INTERRUPTED)

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        return fleet_receipt(**head.fields(), auth_id=sale.reference or "")
