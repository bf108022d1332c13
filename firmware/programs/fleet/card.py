"""Closed-loop fleet card kernel: SELECT the fleet application and read the card's data record.

APDUs (ISO/IEC 7816-4): SELECT by DF name, then READ RECORD 1 of SFI 1, whose template 70 holds
5A (number, BCD padded with F), 5F24 (expiry YYMMDD) and 5F20 (holder name).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from contracts.cards import luhn_ok, mask_pan
from contracts.errors import CardError, CardNotAccepted, MessageError
from firmware import tlv
from firmware.emv.apdu import Transmitter

__all__ = ["FLEET_AID", "READ_RECORD_1", "SELECT_FLEET", "FleetCardData", "read_fleet_card"]

# Proprietary AID: first nibble F marks an unregistered application provider (ISO/IEC 7816-5).
FLEET_AID = bytes.fromhex("F0464F5245464C54")
SELECT_FLEET = bytes([0x00, 0xA4, 0x04, 0x00, len(FLEET_AID)]) + FLEET_AID + b"\x00"
READ_RECORD_1 = bytes([0x00, 0xB2, 0x01, (1 << 3) | 0x04, 0x00])


@dataclass(frozen=True, repr=False)
class FleetCardData:
    pan: str
    expiry: str      # YYMM
    holder: str

    @property
    def masked(self) -> str:
        return mask_pan(self.pan)

    def expired(self, today: dt.date) -> bool:
        year, month = 2000 + int(self.expiry[:2]), int(self.expiry[2:])
        return (today.year, today.month) > (year, month)

    def __repr__(self) -> str:
        return f"FleetCardData(pan={self.masked}, expiry={self.expiry})"


def _split(rapdu: bytes, step: str) -> tuple[bytes, int]:
    if len(rapdu) < 2:
        raise CardError("card answer shorter than a status word", step=step, length=len(rapdu))
    return rapdu[:-2], int.from_bytes(rapdu[-2:], "big")


def _bcd_pan(raw: bytes) -> str:
    digits = raw.hex().upper().rstrip("F")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CardError("card number field is malformed", length=len(raw))
    if not luhn_ok(digits):
        raise CardError("card number fails its check digit")
    return digits


def _exchange(reader: Transmitter, apdu: bytes, step: str) -> tuple[bytes, int]:
    try:
        return _split(reader.transmit(apdu), step)
    except MessageError as exc:   # the reader's APDU layer refused the card's answer
        raise CardError("card answer is malformed", step=step) from exc


def read_fleet_card(reader: Transmitter) -> FleetCardData:
    """Run the fleet application's read sequence; raise CardNotAccepted when the card has none."""
    data, sw = _exchange(reader, SELECT_FLEET, "select")
    if sw in (0x6A82, 0x6A81):
        raise CardNotAccepted("card has no fleet application", sw=f"{sw:04X}")
    if sw != 0x9000:
        raise CardError("SELECT failed", sw=f"{sw:04X}")
    try:
        if tlv.find(data, 0x84) != FLEET_AID:
            raise CardNotAccepted("card answered SELECT with another application")
        record, sw = _exchange(reader, READ_RECORD_1, "read_record")
        if sw != 0x9000:
            raise CardError("READ RECORD failed", sw=f"{sw:04X}")
        outer = tlv.parse(record)
        if len(outer) != 1 or outer[0][0] != 0x70:
            raise CardError("record is not a 70 template")
        fields = tlv.parse_unique(outer[0][1])
    except MessageError as exc:
        raise CardError("card returned malformed data") from exc
    pan_raw, exp_raw = fields.get(0x5A), fields.get(0x5F24)
    if pan_raw is None or exp_raw is None or len(exp_raw) != 3:
        raise CardError("record lacks card number or expiry")
    expiry = exp_raw.hex()
    if not expiry.isdigit() or not 1 <= int(expiry[2:4]) <= 12:
        raise CardError("expiry date is malformed")
    holder = fields.get(0x5F20, b"").decode("ascii", "replace").strip()[:26]
    return FleetCardData(pan=_bcd_pan(pan_raw), expiry=expiry[:4], holder=holder)
