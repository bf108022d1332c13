"""A fleet card as the program sees it, whichever way it reached the terminal: the chip's fleet record, a
stripe whose track-2 number carries a fleet IIN, or a contactless tag known by its UID. Pure, no I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from contracts.cards import mask_number
from contracts.panseal import TAG_NUMBER, pin_pan
from firmware.programs.base import Contactless, Swipe

__all__ = ["FLEET_IINS", "NO_EXPIRY", "OFFLINE_CLASSES", "FleetCard", "stripe_card", "tag_card"]

# The test cards' IIN. ISO/IEC 7812-1: major industry identifier 7 is petroleum; a network's fleet cards
# share the first digits of their numbers, and only those swipes are fleet cards (the rest go to the bank).
FLEET_IINS = ("707700",)
# AUTH_REQUEST's expiry for a tag: a tag carries none, so the registry's own record of the card decides
# (registry.service reads card.expiry, never the terminal's field). Any YYMM the wire takes would do;
# the last month the two-digit year can name claims nothing a reader might hold against the card.
NO_EXPIRY = "9912"
# The configuration's offline_limits entry (firmware.station.Station.offline_limit) per medium.
OFFLINE_CLASSES = {"chip": "fleet", "stripe": "fleet_stripe", "tag": "fleet_tag"}


@dataclass(frozen=True, repr=False)
class FleetCard:
    """number: the PAN's digits, or a tag's "U" and its UID in upper-case hex (the registry's card number);
    medium: chip, stripe or tag (contracts.messages.MEDIA); expiry: YYMM, None when the medium has none."""

    number: str
    medium: str
    expiry: str | None

    @property
    def masked(self) -> str:
        return mask_number(self.number)

    @property
    def wire_expiry(self) -> str:
        return self.expiry or NO_EXPIRY

    @property
    def offline_class(self) -> str:
        return OFFLINE_CLASSES[self.medium]

    @property
    def pin_account(self) -> str:
        """The PAN the PIN block binds to: the card's own; a tag's from its UID (contracts.panseal.pin_pan,
        which the registry uses to open the block)."""
        return pin_pan(self.number)

    def expired(self, today: dt.date) -> bool:
        """Past its YYMM month; a card without an expiry is never expired here (the registry checks)."""
        if self.expiry is None:
            return False
        year, month = 2000 + int(self.expiry[:2]), int(self.expiry[2:])
        return (today.year, today.month) > (year, month)

    def __repr__(self) -> str:
        return f"FleetCard(number={self.masked}, medium={self.medium})"


def stripe_card(swipe: Swipe, iins: tuple[str, ...]) -> FleetCard | None:
    """A swiped fleet card: its track-2 number starts with one of the fleet IINs; other swipes: None."""
    track = swipe.track
    if not track.pan.startswith(iins):
        return None
    return FleetCard(track.pan, "stripe", track.expiry)


def tag_card(tag: Contactless) -> FleetCard | None:
    """A contactless tag by its UID (contracts.panseal.TAG_NUMBER: 4, 7, 8 or 10 bytes); another: None.

    >>> tag_card(Contactless(bytes.fromhex("04a1b2c3d4e5f6")))
    FleetCard(number=U**********E5F6, medium=tag)
    >>> tag_card(Contactless(b"\\x01\\x02")) is None
    True
    """
    number = "U" + tag.uid.hex().upper()
    if TAG_NUMBER.fullmatch(number) is None:
        return None
    return FleetCard(number, "tag", None)
