"""Magnetic stripe track 2 (ISO/IEC 7813): parsing and the fallback rules of the bank-card path.

Chip first; the stripe is read only when the chip failed, or when the service code says the card has no chip.
Pure functions over data: no I/O. Track data never goes into a repr, a log or an error message.
"""

from __future__ import annotations

from datetime import date

from contracts.errors import CardNotAccepted
from contracts.iso8583_spec import ENTRY_FALLBACK, ENTRY_MAGSTRIPE
from contracts.track2 import Track2

__all__ = ["chip_card", "entry_mode_for_swipe", "expired", "sells_goods"]

def chip_card(service_code: str) -> bool:
    """ISO/IEC 7813 service code, first digit 2 or 6: the card carries an IC (chip)."""
    return service_code[:1] in ("2", "6")


def entry_mode_for_swipe(track: Track2, chip_tried_and_failed: bool) -> str:
    """ISO 8583 field 22 for a swiped card; a chip card swiped without trying its chip is refused.

    ISO 8583:1987 field 22 with the network extensions (contracts/iso8583_spec.py): "80" fallback from chip to
    stripe, "90" full unaltered track; third digit "1" = the terminal accepts a PIN. ISO/IEC 7813 service code
    first digit 2 or 6 means the chip must be used first.
    """
    if not chip_card(track.service_code):
        return ENTRY_MAGSTRIPE
    if chip_tried_and_failed:
        return ENTRY_FALLBACK
    raise CardNotAccepted("chip card: insert the chip", reason="chip_not_tried")


def sells_goods(service_code: str) -> bool:
    """ISO/IEC 7813 service code third digit 3 (ATM only) or 4 (cash only): no fuel on such a card.
    Every swiped card is verified by online PIN anyway: an unattended terminal cannot take a signature."""
    return service_code[2:3] not in ("3", "4")


def expired(track: Track2, today: date) -> bool:
    """The card is valid through the last day of its expiry month (years 2000-2099)."""
    year, month = 2000 + int(track.expiry[:2]), int(track.expiry[2:])
    return (today.year, today.month) > (year, month)
