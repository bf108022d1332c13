"""GENERATE AC command and its answer, format 1 (80) or 2 (77) (EMV 4.4 Book 3 6.5.5)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import CardError, MessageError
from firmware import tlv
from firmware.emv.action import Cryptogram
from firmware.emv.apdu import Transmitter, exchange, generate_ac, single_template
from firmware.emv.data import DataStore

__all__ = ["AcResponse", "request_ac"]

CDA_REQUESTED = 0x10       # reference control parameter bit 5


@dataclass(frozen=True)
class AcResponse:
    cid: int
    atc: bytes
    ac: bytes | None                          # None while a CDA signature still holds it
    iad: bytes
    objects: tuple[tuple[int, bytes], ...]    # the answer's objects in card order (CDA hash input)


def _format1(value: bytes) -> AcResponse:
    if not 11 <= len(value) <= 43:
        raise CardError("GENERATE AC format 1 answer has the wrong length", length=len(value))
    cid, atc, ac, iad = value[0], value[1:3], value[3:11], value[11:]
    objects = ((0x9F27, bytes([cid])), (0x9F36, atc), (0x9F26, ac)) + (((0x9F10, iad),) if iad else ())
    return AcResponse(cid, atc, ac, iad, objects)


def _format2(value: bytes, cda: bool) -> AcResponse:
    try:
        fields = tlv.parse_unique(value)
    except MessageError as exc:
        raise CardError("GENERATE AC answer is malformed", **exc.context) from exc
    cid, atc, ac = fields.get(0x9F27), fields.get(0x9F36), fields.get(0x9F26)
    if cid is None or len(cid) != 1:
        raise CardError("GENERATE AC answer lacks the CID")
    if atc is None or len(atc) != 2:
        raise CardError("GENERATE AC answer lacks the ATC")
    signed = cda and 0x9F4B in fields
    if not signed and (ac is None or len(ac) != 8):
        raise CardError("GENERATE AC answer lacks the application cryptogram")
    # dicts keep insertion order and repeats were refused: this is the card's object order (CDA hash)
    return AcResponse(cid[0], atc, None if signed else ac, fields.get(0x9F10, b""), tuple(fields.items()))


def request_ac(reader: Transmitter, store: DataStore, kind: Cryptogram, cdol_data: bytes, *,
               cda: bool, step: str) -> AcResponse:
    """Send GENERATE AC; store 9F27, 9F36, 9F26 and 9F10 from the answer."""
    reference = int(kind) | (CDA_REQUESTED if cda else 0)
    resp = exchange(reader, generate_ac(reference, cdol_data), step)
    if not resp.ok:
        raise CardError("GENERATE AC failed", step=step, sw=resp.swhex)
    tag, value = single_template(resp.data, step, 0x80, 0x77)
    answer = _format1(value) if tag == 0x80 else _format2(value, cda)
    store.set(0x9F27, bytes([answer.cid]))
    store.set(0x9F36, answer.atc)
    if answer.ac is not None:
        store.set(0x9F26, answer.ac)
    if answer.iad:
        store.set(0x9F10, answer.iad)
    return answer
