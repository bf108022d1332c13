"""The fleet card program: claim a fleet card (the chip's fleet application, a stripe with a fleet IIN, a
contactless tag by its UID), ask for the PIN (chip and stripe; a tag asks nothing first), let the registry
decide (card status, limits, wallets, products at this pump) and preset the pump to its allowance.

The registry may answer prompts_required: the terminal asks what it lists (the PIN, odometer, vehicle,
driver id) and sends one new request with a new request id and the answers; a second such answer is a
decline. Each request id is journaled (state authorizing) before the registry is asked, and the registry
keys the hold it grants by it (its authorization id is the request id). A restart that finds the sale
still authorizing, its answer lost, closes that hold as a sale with nothing dispensed, instead of leaving
the wallet held until the registry lets it lapse.

While the registry is away a card may still sell within the configuration's offline limit for its medium,
unless the stop-list names it (firmware.programs.fleet.offline); no PIN is asked offline.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from contracts.errors import CardNotAccepted, HostUnavailable, SaleCancelled
from contracts.messages import AuthAnswer
from contracts.reasons import DeclineReason
from contracts.receipt import ReceiptLine
from contracts.screens import Screen
from firmware.programs.base import (
    CardIn,
    ChipCard,
    Claim,
    Contactless,
    Decline,
    Grant,
    Question,
    ReceiptHead,
    SaleSteps,
    Swipe,
)
from firmware.programs.fleet.card import read_fleet_card
from firmware.programs.fleet.grant import registry_grant
from firmware.programs.fleet.media import FLEET_IINS, FleetCard, stripe_card, tag_card
from firmware.programs.fleet.offline import OFFLINE, offline_grant, sells_offline
from firmware.receipt import fleet_receipt
from firmware.sale.machine import SaleState
from firmware.sale.record import Preset, SaleRecord
from firmware.station import Station

__all__ = ["QUESTIONS", "REQUEST", "FleetProgram", "Registry"]

log = logging.getLogger(__name__)

REQUEST = "registry_request"     # the journaled request id, which the registry keys its hold by
# the account's prompts: their ui.screens question texts (ask.<id>) and the longest answer the wire takes
# (contracts.messages AUTH_REQUEST prompts: odometer 7 digits, vehicle and driver id 16 characters)
QUESTIONS = {"odometer": Question("odometer", max_len=7), "vehicle": Question("vehicle", max_len=16),
             "driver_id": Question("driver_id", max_len=16)}
UNAVAILABLE = Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)


class Registry(Protocol):
    """The registry's authorization service and the terminal's fleet keys (firmware.hostlink.HostLink)."""
    @property
    def online(self) -> bool: ...
    @property
    def station(self) -> Station: ...
    def authorize(self, *, pan: str, expiry: str, pin_block: bytes, pump: int, request_id: str | None = None,
                  medium: str = "chip", prompts: Mapping[str, str] | None = None) -> AuthAnswer: ...
    def stop_entry(self, number: str) -> str: ...
    def seal_for_sale(self, number: str, sale_id: str) -> str: ...
    def release(self, request_id: str, pump: int, card_masked: str) -> None: ...
    def event(self, severity: str, code: str, detail: str) -> None: ...


class FleetProgram:
    name = "fleet"

    def __init__(self, registry: Registry, *, iins: tuple[str, ...] = FLEET_IINS) -> None:
        """iins: the number prefixes of the network's fleet cards; a swipe of another number is not ours."""
        self.registry, self.iins = registry, iins

    @property
    def sells_offline(self) -> bool:
        """True while the configuration in force has an offline limit for a fleet medium."""
        return sells_offline(self.registry.station)

    def claim(self, card: CardIn) -> Claim | Decline | None:
        if isinstance(card, Swipe):
            swiped = stripe_card(card, self.iins)
            return None if swiped is None else Claim(self, swiped)
        if isinstance(card, Contactless):
            tag = tag_card(card)
            return None if tag is None else Claim(self, tag)
        if not isinstance(card, ChipCard):
            return None
        try:
            data = read_fleet_card(card.reader)
        except CardNotAccepted:
            return None
        return Claim(self, FleetCard(data.pan, "chip", data.expiry))

    def authorize(self, claim: Claim, steps: SaleSteps) -> Grant | Decline:
        card: FleetCard = claim.card
        if card.expired(steps.now().date()):
            return Decline(DeclineReason.CARD_EXPIRED)
        if not self.registry.online:
            return offline_grant(card, steps, self.registry)
        pump = steps.choose_pump()
        pin_block = b"" if card.medium == "tag" else steps.port.pin_block(card.pin_account)
        steps.begin(pump, card.number)
        try:
            return self._online(card, steps, pump, pin_block)
        finally:
            del pin_block

    def _online(self, card: FleetCard, steps: SaleSteps, pump: int, pin_block: bytes) -> Grant | Decline:
        request_id = str(uuid.uuid4())
        steps.authorizing({REQUEST: request_id})
        answer = self._ask(card, pump, pin_block, request_id, {})
        if isinstance(answer, AuthAnswer) and answer.reason is DeclineReason.PROMPTS_REQUIRED:
            if "pin" in answer.prompts and not pin_block:
                pin_block = steps.port.pin_block(card.pin_account)
            answers = {p: steps.port.ask(QUESTIONS[p]) for p in answer.prompts if p in QUESTIONS}
            request_id = str(uuid.uuid4())       # a new request: the first one was declined
            steps.authorizing({REQUEST: request_id})
            answer = self._ask(card, pump, pin_block, request_id, answers)
            if isinstance(answer, AuthAnswer) and answer.reason is DeclineReason.PROMPTS_REQUIRED:
                log.warning("registry asked for prompts again", extra={"prompts": ",".join(answer.prompts)})
                return Decline(DeclineReason.DO_NOT_HONOUR)
        if isinstance(answer, Decline):
            return answer
        if not answer.approved or answer.auth_id is None:
            # a wrong PIN: the tries the registry leaves before it blocks the card, for the declined screen
            tries = {} if answer.pin_tries_left is None else {"pin_tries_left": answer.pin_tries_left}
            return Decline(answer.reason or DeclineReason.DO_NOT_HONOUR, data=tries)
        # registry_auth: the sale settles against this authorization when it syncs
        try:
            return registry_grant(answer, steps, pump, {REQUEST: request_id, "registry_auth": answer.auth_id,
                                                        "medium": card.medium})
        except SaleCancelled:
            # the driver gave up at the product choice: the registry's hold ends now, not when it lapses
            self.registry.release(request_id, pump, card.masked)
            raise

    def _ask(self, card: FleetCard, pump: int, pin_block: bytes, request_id: str,
             answers: Mapping[str, str]) -> AuthAnswer | Decline:
        # medium and prompts only when they differ from the defaults: a registry port from before fleet
        # accounts takes neither
        extra: dict[str, Any] = {"medium": card.medium} if card.medium != "chip" else {}
        if answers:
            extra["prompts"] = dict(answers)
        try:
            return self.registry.authorize(pan=card.number, expiry=card.wire_expiry, pin_block=pin_block,
                                           pump=pump, request_id=request_id, **extra)
        except HostUnavailable as exc:
            log.warning("authorization failed", extra={"error": str(exc)})
            return UNAVAILABLE

    def settle(self, sale: SaleRecord, charged_cents: int) -> tuple[str, ...]:
        # the registry books it from the synced sale, once by its id; an offline one by its sealed card
        return (OFFLINE,) if sale.data.get(OFFLINE) is True else ()

    def recover(self, sale: SaleRecord) -> Grant | Decline:
        """Stopped while the registry was asked: it may hold litres under the request id. Use that hold
        for a sale the pump never served (the sale machine completes it with nothing dispensed), so the
        synced sale closes it. A registry that never approved stores it flagged, with nothing charged.
        An offline sale stopped before its grant held nothing: interrupted."""
        request_id = sale.data.get(REQUEST) if sale.state is SaleState.AUTHORIZING else None
        if not isinstance(request_id, str):
            return Decline(DeclineReason.INTERRUPTED)    # the registry was never asked
        return Grant(Preset.volume(0), nozzles=(), reference=request_id,
                     data={REQUEST: request_id, "registry_auth": request_id})

    def receipt(self, sale: SaleRecord, head: ReceiptHead) -> list[ReceiptLine]:
        return fleet_receipt(**head.fields(), auth_id=sale.reference or "")
