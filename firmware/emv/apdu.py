"""EMV command APDUs (Book 3 6.5, Book 1 11.3) and one exchange function over the transmit() seam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from contracts.errors import CardError, MessageError
from firmware import tlv

__all__ = [
    "Response",
    "Transmitter",
    "exchange",
    "external_authenticate",
    "generate_ac",
    "get_challenge",
    "get_data",
    "get_processing_options",
    "get_response",
    "internal_authenticate",
    "read_record",
    "select",
    "single_template",
    "verify",
]

MAX_RESPONSE = 1024     # no EMV response is longer; a bigger one is hostile


class Transmitter(Protocol):
    """Anything shaped like a pyscard connection: data + SW1 SW2 back for each command."""

    def transmit(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    @property
    def swhex(self) -> str:
        return f"{self.sw:04X}"


def exchange(reader: Transmitter, apdu: bytes, step: str) -> Response:
    """Send one command; CardRemoved passes through, a malformed answer becomes CardError."""
    try:
        raw = reader.transmit(apdu)
    except MessageError as exc:
        raise CardError("card answer is malformed", step=step) from exc
    if len(raw) < 2:
        raise CardError("card answer shorter than a status word", step=step, length=len(raw))
    if len(raw) - 2 > MAX_RESPONSE:
        raise CardError("card answer is too long", step=step, length=len(raw))
    response = Response(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))
    if not response.data and response.sw >> 8 in (0x62, 0x63) and _is_case4(apdu):
        return _warning_data(reader, response, step)
    return response


def _is_case4(apdu: bytes) -> bool:
    return len(apdu) > 5 and len(apdu) == 6 + apdu[4]


def _warning_data(reader: Transmitter, warning: Response, step: str) -> Response:
    """T=0, case 4 command answered with a warning (62xx/63xx) alone: the data waits in the card; fetch it
    with GET RESPONSE, Le = 00 then the length 6Cxx names, and keep the warning (Book 1 9.3.1.3, A5)."""
    apdu = get_response(0)
    for _ in range(2):
        try:
            raw = reader.transmit(apdu)
        except MessageError as exc:
            raise CardError("card answer is malformed", step=step) from exc
        if len(raw) < 2 or len(raw) - 2 > MAX_RESPONSE:
            raise CardError("card answer to GET RESPONSE is malformed", step=step, length=len(raw))
        if raw[-2] == 0x6C and len(raw) == 2:
            apdu = get_response(raw[-1])
            continue
        if raw[-2:] == b"\x90\x00":
            return Response(bytes(raw[:-2]), warning.sw)
        break
    return warning


def single_template(data: bytes, step: str, *allowed: int) -> tuple[int, bytes]:
    """The one outer TLV object of a response, whose tag must be one of allowed."""
    try:
        objects = tlv.parse(data)
    except MessageError as exc:
        raise CardError("card answer is not valid BER-TLV", step=step) from exc
    if len(objects) != 1 or objects[0][0] not in allowed:
        raise CardError("card answer has the wrong template", step=step,
                        tags=",".join(f"{t:X}" for t, _ in objects[:4]))
    return objects[0]


def _case4(cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise CardError("command data too long", ins=f"{ins:02X}", length=len(data))
    return bytes([cla, ins, p1, p2, len(data)]) + data + b"\x00"


def get_response(length: int) -> bytes:
    """GET RESPONSE (ISO/IEC 7816-4 7.6.1; EMV Book 1 9.3.1.3), case 2."""
    return bytes([0x00, 0xC0, 0x00, 0x00, length])


def select(name: bytes, *, next_occurrence: bool = False) -> bytes:
    """SELECT by DF name, first or next occurrence (Book 1 11.3.2)."""
    return _case4(0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, name)


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD (Book 3 6.5.11): P2 = SFI << 3 | 4."""
    return bytes([0x00, 0xB2, record, (sfi << 3) | 0x04, 0x00])


def get_processing_options(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS with the PDOL data in template 83 (Book 3 6.5.8)."""
    return _case4(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, pdol_data))


def get_data(tag: int) -> bytes:
    """GET DATA for ATC, last online ATC, PIN try counter... (Book 3 6.5.7)."""
    return bytes([0x80, 0xCA, tag >> 8, tag & 0xFF, 0x00])


def get_challenge() -> bytes:
    return bytes([0x00, 0x84, 0x00, 0x00, 0x00])


def verify(block: bytes | bytearray, *, enciphered: bool) -> bytes:
    """VERIFY, P2 80 plaintext / 88 enciphered PIN (Book 3 6.5.12). Case 3: no Le."""
    return bytes([0x00, 0x20, 0x00, 0x88 if enciphered else 0x80, len(block)]) + bytes(block)


def internal_authenticate(ddol_data: bytes) -> bytes:
    return _case4(0x00, 0x88, 0x00, 0x00, ddol_data)


def generate_ac(reference: int, cdol_data: bytes) -> bytes:
    """GENERATE AC; reference = cryptogram type bits 8-7 plus bit 5 for a CDA signature (Book 3 6.5.5)."""
    return _case4(0x80, 0xAE, reference, 0x00, cdol_data)


def external_authenticate(issuer_auth_data: bytes) -> bytes:
    """EXTERNAL AUTHENTICATE (Book 3 6.5.4), case 3."""
    return bytes([0x00, 0x82, 0x00, 0x00, len(issuer_auth_data)]) + issuer_auth_data
