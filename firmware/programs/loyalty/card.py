"""Which cards may be loyalty cards: the chip's card record (the fleet application's, firmware.programs
.fleet.card) or a swiped track 2 whose number carries a loyalty IIN, and any contactless tag by its UID. A
tag carries no IIN: only the registry tells a loyalty tag from a fleet tag (firmware.programs.loyalty
.adjunct asks it)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.cards import mask_number
from contracts.errors import CardError, CardNotAccepted
from contracts.panseal import TAG_NUMBER
from firmware.programs.base import CardIn, ChipCard, Contactless, Swipe
from firmware.programs.fleet.card import read_fleet_card

__all__ = ["LOYALTY_IINS", "LoyaltyCard", "loyalty_card"]

# The test cards' IIN (ISO/IEC 7812-1 major industry identifier 7, petroleum): 707701 is loyalty.
LOYALTY_IINS = ("707701",)


@dataclass(frozen=True, repr=False)
class LoyaltyCard:
    """number: the card's digits, or a tag's "U" and UID (in memory only, until the sale seals it);
    medium: chip, stripe or tag."""

    number: str
    medium: str

    @property
    def masked(self) -> str:
        return mask_number(self.number)

    def __repr__(self) -> str:
        return f"LoyaltyCard(number={self.masked}, medium={self.medium})"


def loyalty_card(card: CardIn, iins: tuple[str, ...]) -> LoyaltyCard | None:
    """The loyalty card presented, or None: another card (a chip without the card record, another IIN).
    A tag is a candidate only: the registry decides."""
    if isinstance(card, Contactless):
        number = "U" + card.uid.hex().upper()
        return LoyaltyCard(number, "tag") if TAG_NUMBER.fullmatch(number) else None
    if isinstance(card, Swipe):
        pan = card.track.pan
        return LoyaltyCard(pan, "stripe") if pan.startswith(iins) else None
    if not isinstance(card, ChipCard):
        return None
    try:
        data = read_fleet_card(card.reader)
    except (CardNotAccepted, CardError):     # not ours, or unreadable: a payment program may read it
        return None
    return LoyaltyCard(data.pan, "chip") if data.pan.startswith(iins) else None
