"""Magnetic stripe track 2 (ISO/IEC 7813) as a type: parsed and checked once, never shown in full.

Track data never goes into a repr, a log or an error message.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.cards import luhn_ok, mask_pan
from contracts.errors import CardError

__all__ = ["MAX_CONTENT", "Track2", "parse_track2"]

MAX_CONTENT = 37      # ISO/IEC 7813: 40 characters, less start sentinel, end sentinel and LRC


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts superscripts and other scripts' digits."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True, repr=False)
class Track2:
    """Track 2 content. Built only with valid fields: the constructor checks them like parse_track2."""

    pan: str
    expiry: str            # YYMM
    service_code: str      # 3 digits
    discretionary: str

    def __post_init__(self) -> None:
        if not (_digits(self.pan) and 12 <= len(self.pan) <= 19):
            raise CardError("track 2 PAN must be 12 to 19 digits", field="pan")
        if not luhn_ok(self.pan):
            raise CardError("track 2 PAN fails the Luhn check", field="pan")
        if not (_digits(self.expiry) and len(self.expiry) == 4 and 1 <= int(self.expiry[2:]) <= 12):
            raise CardError("track 2 expiry must be YYMM with month 01 to 12", field="expiry")
        if not (_digits(self.service_code) and len(self.service_code) == 3):
            raise CardError("track 2 service code must be 3 digits", field="service_code")
        if self.discretionary and not _digits(self.discretionary):
            raise CardError("track 2 discretionary data must be digits", field="discretionary")
        if len(self.raw) > MAX_CONTENT:
            raise CardError("track 2 longer than 37 characters", field="track2")

    @property
    def raw(self) -> str:
        """Content between the sentinels, "PAN=YYMMSSS...": the form of ISO 8583 field 35."""
        return f"{self.pan}={self.expiry}{self.service_code}{self.discretionary}"

    def __repr__(self) -> str:
        return f"Track2(pan={mask_pan(self.pan)!r})"


def parse_track2(text: str) -> Track2:
    """Track 2 as a reader or EMV tag 57 gives it: sentinels ';' '?' and a trailing LRC optional,
    '=' or 'D'."""
    content = text.strip().removeprefix(";")
    end = content.find("?")
    if end >= 0:
        if len(content) - end > 2:                  # at most the LRC after the end sentinel
            raise CardError("track 2 has data after the end sentinel", field="track2")
        content = content[:end]
    if len(content) > MAX_CONTENT + 1:              # + 1: an EMV 'F' pad, removed below
        raise CardError("track 2 longer than 37 characters", field="track2")
    separators = [i for i, ch in enumerate(content) if ch in "=Dd"]
    if len(separators) != 1:
        raise CardError("track 2 needs exactly one field separator", field="track2")
    sep = separators[0]
    pan, rest = content[:sep], content[sep + 1:]
    if content[sep] in "Dd" and rest[-1:] in ("F", "f"):
        rest = rest[:-1]                            # EMV 57 pads an odd number of nibbles with F
    if len(rest) < 7:
        raise CardError("track 2 lacks expiry or service code", field="track2")
    return Track2(pan, rest[:4], rest[4:7], rest[7:])
