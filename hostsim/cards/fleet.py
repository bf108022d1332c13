"""A closed-loop fleet card applet, an unknown card and a scripted hostile card.

The fleet applet has a proprietary AID (first nibble F: unregistered, ISO/IEC 7816-5) and one record,
read with READ RECORD SFI 1 record 1, holding the PAN (5A), expiry (5F24) and holder name (5F20).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable

from contracts.errors import ConfigError
from hostsim.cards.atr import build_atr

__all__ = ["DEFAULT_ATR", "FLEET_AID", "FLEET_LABEL", "BlankCard", "FleetCard", "HostileCard", "tlv"]

FLEET_AID = bytes.fromhex("F0464F5245464C54")   # F0 "FOREFLT"
FLEET_LABEL = b"FORECOURT FLEET"

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"

INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
READ_RECORD_P2_SFI1 = (1 << 3) | 0x04   # SFI 1, "P1 is a record number"




DEFAULT_ATR = build_atr(b"FORECRT1")


def tlv(tag: int, value: bytes) -> bytes:
    """BER-TLV with a 1- or 2-byte tag and a definite length."""
    tag_bytes = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    size = len(value)
    if size < 0x80:
        length = bytes([size])
    elif size <= 0xFF:
        length = bytes([0x81, size])
    else:
        length = bytes([0x82]) + size.to_bytes(2, "big")
    return tag_bytes + length + value


def _packed_bcd(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


class FleetCard:
    """The fleet applet. Power-on and reset deselect it."""

    def __init__(self, pan: str, expiry: str, holder: str, atr: bytes = DEFAULT_ATR) -> None:
        if not (pan.isdigit() and 12 <= len(pan) <= 19):
            raise ConfigError("fleet card PAN must be 12 to 19 digits", length=len(pan))
        if not (len(expiry) == 4 and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
            raise ConfigError("fleet card expiry must be YYMM", expiry=expiry)
        encoded_holder = holder.encode("ascii")
        if not 2 <= len(encoded_holder) <= 26:
            raise ConfigError("cardholder name must be 2 to 26 ASCII characters", length=len(encoded_holder))
        self._pan = pan
        self.expiry = expiry
        self.holder = holder
        self.atr = bytes(atr)
        self.selected = False
        year, month = 2000 + int(expiry[:2]), int(expiry[2:])
        expiry_date = f"{expiry}{calendar.monthrange(year, month)[1]:02d}"
        self._record = tlv(0x70, tlv(0x5A, _packed_bcd(pan)) + tlv(0x5F24, bytes.fromhex(expiry_date))
                           + tlv(0x5F20, encoded_holder))
        self._fci = tlv(0x6F, tlv(0x84, FLEET_AID) + tlv(0xA5, tlv(0x50, FLEET_LABEL)))

    def __repr__(self) -> str:  # never the full PAN
        return f"FleetCard(pan=…{self._pan[-4:]}, expiry={self.expiry})"

    @property
    def pan_last4(self) -> str:
        return self._pan[-4:]

    def power_on(self) -> None:
        self.selected = False

    def power_off(self) -> None:
        self.selected = False

    def reset(self) -> None:
        self.selected = False

    def apdu(self, command: bytes) -> bytes:
        if len(command) < 4:
            return SW_WRONG_LENGTH
        cla, ins, p1, p2 = command[:4]
        if cla != 0x00:
            return SW_CLA_NOT_SUPPORTED
        if ins == INS_SELECT:
            return self._select(p1, p2, command[4:])
        if ins == INS_READ_RECORD:
            if not self.selected:
                return SW_CONDITIONS_NOT_SATISFIED
            if p1 == 1 and p2 == READ_RECORD_P2_SFI1:
                return self._record + SW_OK
            return SW_RECORD_NOT_FOUND
        return SW_INS_NOT_SUPPORTED

    def _select(self, p1: int, p2: int, body: bytes) -> bytes:
        if p1 != 0x04 or p2 not in (0x00, 0x0C):
            return SW_WRONG_P1P2
        if not body or len(body) < 1 + body[0]:
            return SW_WRONG_LENGTH
        name = body[1:1 + body[0]]
        if name != FLEET_AID:
            self.selected = False
            return SW_FILE_NOT_FOUND
        self.selected = True
        return (b"" if p2 == 0x0C else self._fci) + SW_OK


class BlankCard:
    """A card with no application this terminal knows: every SELECT fails with 6A82."""

    def __init__(self, atr: bytes = DEFAULT_ATR) -> None:
        self.atr = bytes(atr)

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...

    def apdu(self, command: bytes) -> bytes:
        if len(command) >= 2 and command[1] == INS_SELECT:
            return SW_FILE_NOT_FOUND
        return SW_INS_NOT_SUPPORTED


class HostileCard:
    """Answers each APDU with the next scripted raw response (anything, even malformed), then 6F00."""

    def __init__(self, responses: Iterable[bytes], atr: bytes = DEFAULT_ATR) -> None:
        self.atr = bytes(atr)
        self._responses = [bytes(r) for r in responses]
        self.commands: list[bytes] = []

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...

    def apdu(self, command: bytes) -> bytes:
        self.commands.append(bytes(command))
        index = len(self.commands) - 1
        return self._responses[index] if index < len(self._responses) else SW_NO_PRECISE_DIAGNOSIS
