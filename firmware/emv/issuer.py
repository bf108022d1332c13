"""Online processing on the card side: issuer authentication (Book 3 10.9) and issuer script
processing (Book 3 10.10, results 9F5B per Book 4 A5)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import MessageError
from firmware import tlv
from firmware.emv.apdu import Transmitter, exchange, external_authenticate
from firmware.emv.data import DataStore, TsiBit, TvrBit

__all__ = ["IssuerResponse", "authenticate_issuer", "run_scripts"]


@dataclass(frozen=True)
class IssuerResponse:
    """The host's answer: ARC 8A (two ASCII characters; None = no answer, unable to go online),
    Issuer Authentication Data 91, and issuer script templates 71/72 as received (TLV)."""

    arc: bytes | None
    auth_data: bytes | None = None
    scripts: bytes = b""

    @classmethod
    def from_icc_data(cls, arc: bytes | None, icc_data: bytes) -> IssuerResponse:
        """From the ISO 8583 response field 55; a malformed field counts as no issuer data."""
        try:
            objects = tlv.parse(icc_data)
        except MessageError:
            return cls(arc)
        auth = next((v for t, v in objects if t == 0x91), None)
        scripts = b"".join(tlv.encode(t, v) for t, v in objects if t in (0x71, 0x72))
        return cls(arc, auth, scripts)


def authenticate_issuer(reader: Transmitter, store: DataStore, auth_data: bytes) -> bool:
    """EXTERNAL AUTHENTICATE once with 91; a refusal sets 'issuer authentication failed'."""
    resp = exchange(reader, external_authenticate(auth_data), "external_authenticate")
    store.tsi.set(TsiBit.ISSUER_AUTHENTICATION_PERFORMED)
    if not resp.ok:
        store.tvr.set(TvrBit.ISSUER_AUTHENTICATION_FAILED)
        return False
    return True


def _templates(scripts: bytes, tag: int) -> list[bytes | None]:
    """Values of the 71 or 72 templates; one None for an unparseable set (counted as one failed script)."""
    try:
        return [v for t, v in tlv.parse(scripts) if t == tag]
    except MessageError:
        return [None]


def _run_one(reader: Transmitter, template: bytes | None) -> bytes:
    """One script; its 5-byte result: nibble result | nibble sequence, then the script identifier."""
    if template is None:
        return b"\x10\x00\x00\x00\x00"
    try:
        objects = tlv.parse(template)
    except MessageError:
        return b"\x10\x00\x00\x00\x00"
    ident = next((v for t, v in objects if t == 0x9F18), b"\x00\x00\x00\x00")
    ident = ident[:4].rjust(4, b"\x00")
    commands = [v for t, v in objects if t == 0x86]
    if any(t not in (0x86, 0x9F18) for t, _ in objects) or not commands:
        return b"\x10" + ident
    for number, command in enumerate(commands, start=1):
        if len(command) < 4:
            return bytes([0x10 | min(number, 15)]) + ident
        resp = exchange(reader, command, "issuer_script")
        if resp.sw >> 8 not in (0x90, 0x62, 0x63):
            return bytes([0x10 | min(number, 15)]) + ident
    return b"\x20" + ident


def run_scripts(reader: Transmitter, store: DataStore, scripts: bytes, *, final: bool) -> list[bytes]:
    """Run the 71 (before the final GENERATE AC) or 72 (after) scripts; 9F5B entries."""
    results = []
    for template in _templates(scripts, 0x72 if final else 0x71):
        result = _run_one(reader, template)
        results.append(result)
        store.tsi.set(TsiBit.SCRIPT_PROCESSING_PERFORMED)
        if result[0] >> 4 == 0x1:
            store.tvr.set(TvrBit.SCRIPT_FAILED_AFTER_FINAL_GENERATE_AC if final
                          else TvrBit.SCRIPT_FAILED_BEFORE_FINAL_GENERATE_AC)
    return results
