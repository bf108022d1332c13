"""The purse SAM's commands and answers (docs/chip-wallet-sam.md): pure builders and parsers, no I/O.

The terminal builds each command APDU here and reads the answer with the parse_ functions; the SAM
(hostsim.cards.purse_sam) reads the same data fields. The SAM application answers SELECT (CLA 00) by its
AID; its own commands are in the proprietary class, CLA 80, INS codes that are none of ISO/IEC 7816-4's
interindustry ones. Every parser raises SamApduError (a MessageError) with a reason.

>>> auth_hello(1_800_000_000).hex()
'80500000046b49d20000'
>>> split_answer(bytes.fromhex("0102039000"))
(b'\\x01\\x02\\x03', 36864)
>>> parse_fci(encode_fci(SamInfo(bytes(8), SamState.PERSONALIZED, 1)))
SamInfo(sam_id=b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00', state=<SamState.PERSONALIZED: 3>, key_version=1)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from contracts.errors import MessageError
from contracts.purse_keys import ID_LEN, MAC_LEN, mac, verify_mac
from contracts.purse_records import SIGNED_LEN
from contracts.purse_session import ANSWER_LEN, CERT_LEN, CONFIRM_LEN, KEY_LEN, PROOF_LEN, SM_MAC_LEN

__all__ = [
    "CLA_SAM", "INS_AUTH_CONFIRM", "INS_AUTH_HELLO", "INS_AUTH_PROOF", "INS_ENCIPHER_PIN",
    "INS_GENERATE_KEY_PAIR", "INS_GET_SEQUENCE", "INS_MAC_RECORD", "INS_PUT_CERTIFICATE", "INS_PUT_SAM_KEY",
    "INS_SELECT", "INS_UNWRAP", "INS_WRAP", "MAX_UNWRAP", "MAX_WRAP", "SAM_AID", "VERIFY_INS", "VERIFY_P2",
    "SamApduError", "SamInfo", "SamState", "auth_confirm", "auth_hello", "auth_proof", "encipher_pin",
    "encode_fci", "generate_key_pair", "get_sequence", "mac_record", "parse_fci", "parse_proof",
    "parse_put_certificate", "parse_record_mac", "parse_sequence", "parse_time", "parse_unwrapped",
    "parse_wrap", "put_certificate", "put_sam_key", "record_mac_message", "sam_record_mac", "select",
    "split_answer", "unwrap", "unwrapped_answer", "verify_sam_record_mac", "wrap",
]

SAM_AID = bytes.fromhex("F0464F524553414D")     # F0 "FORESAM": proprietary (ISO/IEC 7816-5, first nibble F)
CLA_SAM = 0x80
INS_SELECT = 0xA4
INS_GENERATE_KEY_PAIR = 0x40
INS_PUT_CERTIFICATE = 0x42
INS_PUT_SAM_KEY = 0x44
INS_AUTH_HELLO = 0x50
INS_AUTH_PROOF = 0x52
INS_AUTH_CONFIRM = 0x54
INS_WRAP = 0x56
INS_UNWRAP = 0x58
INS_ENCIPHER_PIN = 0x5A
INS_MAC_RECORD = 0x5C
INS_GET_SEQUENCE = 0x5E
# The card's VERIFY with an enciphered PIN, which ENCIPHER PIN wraps (contracts.purse_apdu: CLA 84 INS 20,
# P2 88 as EMV Book 3 numbers an enciphered PIN).
VERIFY_INS = 0x20
VERIFY_P2 = 0x88
MAX_WRAP = 256 - 5 - SM_MAC_LEN        # card command data through WRAP: its SM APDU fits one short answer
MAX_UNWRAP = 255 - SM_MAC_LEN - 2      # card answer data through UNWRAP: the SM answer fits one Lc
_TAG_FCI, _TAG_AID, _TAG_PROP = 0x6F, 0x84, 0xA5
_U32 = 2**32 - 1


class SamApduError(MessageError):
    """A SAM command or answer is malformed; reason says which part."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class SamState(IntEnum):
    """How far personalisation went: each command of provisioning moves one step."""

    BLANK = 0           # id only
    KEYED = 1           # GENERATE KEY PAIR done
    CERTIFIED = 2       # PUT CERTIFICATE done (and the issuer CA's key)
    PERSONALIZED = 3    # PUT SAM KEY done: the session commands work


@dataclass(frozen=True)
class SamInfo:
    """What SELECT tells: the SAM's id, its state, the version of its SAM MAC key (0: none yet)."""

    sam_id: bytes
    state: SamState
    key_version: int


def _apdu(ins: int, p1: int = 0, p2: int = 0, data: bytes = b"", *, le: bool = True,
          cla: int = CLA_SAM) -> bytes:
    if len(data) > 255:
        raise SamApduError("a short APDU carries at most 255 bytes", reason="length", length=len(data))
    body = bytes([len(data)]) + data if data else b""
    return bytes([cla, ins, p1, p2]) + body + (b"\x00" if le else b"")


def _length(data: bytes, size: int, what: str) -> bytes:
    if len(data) != size:
        raise SamApduError(f"{what} is {size} bytes", reason="length", length=len(data))
    return data


def split_answer(rapdu: bytes) -> tuple[bytes, int]:
    """(data, status word) of any answer APDU."""
    if len(rapdu) < 2:
        raise SamApduError("an answer is at least its status word", reason="length", length=len(rapdu))
    return bytes(rapdu[:-2]), int.from_bytes(rapdu[-2:], "big")


def select() -> bytes:
    """SELECT the SAM application by its AID (CLA 00, first or only occurrence, FCI returned)."""
    return _apdu(INS_SELECT, 0x04, 0x00, SAM_AID, cla=0x00)


def encode_fci(info: SamInfo) -> bytes:
    """6F { 84 AID, A5 { DF20 id (8), DF21 state (1), DF22 SAM key version (1) } }."""
    prop = (b"\xdf\x20\x08" + info.sam_id + b"\xdf\x21\x01" + bytes([info.state])
            + b"\xdf\x22\x01" + bytes([info.key_version]))
    inner = bytes([_TAG_AID, len(SAM_AID)]) + SAM_AID + bytes([_TAG_PROP, len(prop)]) + prop
    return bytes([_TAG_FCI, len(inner)]) + inner


def parse_fci(data: bytes) -> SamInfo:
    """The SamInfo in a SELECT answer; only the layout encode_fci makes is accepted."""
    _length(data, 33, "the SAM's FCI")
    try:
        info = SamInfo(bytes(data[17:25]), SamState(data[28]), data[32])
    except ValueError:
        raise SamApduError("unknown SAM state", reason="format", state=data[28]) from None
    if encode_fci(info) != data:
        raise SamApduError("not the SAM's FCI", reason="format")
    return info


def generate_key_pair() -> bytes:
    """GENERATE KEY PAIR (blank SAM): the answer is the new compressed public key (33)."""
    return _apdu(INS_GENERATE_KEY_PAIR)


def put_certificate(certificate: bytes, ca_public_key: bytes) -> bytes:
    """PUT CERTIFICATE: the SAM's certificate (112) and the issuer CA's compressed public key (33)."""
    return _apdu(INS_PUT_CERTIFICATE, data=_length(certificate, CERT_LEN, "a certificate")
                 + _length(ca_public_key, KEY_LEN, "a public key"), le=False)


def parse_put_certificate(data: bytes) -> tuple[bytes, bytes]:
    _length(data, CERT_LEN + KEY_LEN, "PUT CERTIFICATE data")
    return bytes(data[:CERT_LEN]), bytes(data[CERT_LEN:])


def put_sam_key(key_version: int, sealed: bytes) -> bytes:
    """PUT SAM KEY: P1 the key version, data the key sealed to the SAM (contracts.purse_seal)."""
    if not 0 < key_version <= 255:
        raise SamApduError("a key version is 1..255", reason="range", version=key_version)
    return _apdu(INS_PUT_SAM_KEY, key_version, 0, sealed, le=False)


def auth_hello(time: int) -> bytes:
    """AUTH HELLO: the terminal's time (Unix seconds); the answer is the SAM hello for the card (165)."""
    if not 0 <= time <= _U32:
        raise SamApduError("a time is 32-bit Unix seconds", reason="range", time=time)
    return _apdu(INS_AUTH_HELLO, data=struct.pack(">I", time))


def parse_time(data: bytes) -> int:
    return int(struct.unpack(">I", _length(data, 4, "a time"))[0])


def auth_proof(card_answer: bytes) -> bytes:
    """AUTH PROOF: the card's answer (225); the SAM's answer is its proof (64) and the card's id (8)."""
    return _apdu(INS_AUTH_PROOF, data=_length(card_answer, ANSWER_LEN, "a card answer"))


def parse_proof(data: bytes) -> tuple[bytes, bytes]:
    """(proof for the card, card id the SAM authenticated) of an AUTH PROOF answer."""
    _length(data, PROOF_LEN + ID_LEN, "an AUTH PROOF answer")
    return bytes(data[:PROOF_LEN]), bytes(data[PROOF_LEN:])


def auth_confirm(confirm: bytes) -> bytes:
    """AUTH CONFIRM: the card's key confirmation (16); 9000 opens the session for WRAP and UNWRAP."""
    return _apdu(INS_AUTH_CONFIRM, data=_length(confirm, CONFIRM_LEN, "a key confirmation"), le=False)


def wrap(cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
    """WRAP: a command for the card (header and data); the answer is the complete SM APDU to send it."""
    if len(data) > MAX_WRAP or not all(0 <= b <= 0xFF for b in (cla, ins, p1, p2)):
        raise SamApduError(f"WRAP takes a header and at most {MAX_WRAP} bytes", reason="length")
    return _apdu(INS_WRAP, data=bytes([cla, ins, p1, p2]) + data)


def parse_wrap(data: bytes) -> tuple[int, int, int, int, bytes]:
    if not 4 <= len(data) <= 4 + MAX_WRAP:
        raise SamApduError("WRAP data is a header and at most 243 bytes", reason="length")
    return data[0], data[1], data[2], data[3], bytes(data[4:])


def unwrap(card_rapdu: bytes) -> bytes:
    """UNWRAP: the card's SM answer (or its bare error status); the answer is its data and the card's SW."""
    if not 2 <= len(card_rapdu) <= MAX_UNWRAP + SM_MAC_LEN + 2:
        raise SamApduError("UNWRAP takes one SM answer", reason="length", length=len(card_rapdu))
    return _apdu(INS_UNWRAP, data=card_rapdu)


def unwrapped_answer(data: bytes, sw: bytes) -> bytes:
    """The data of an UNWRAP answer: the card's data, then the card's status word (the SAM's follows)."""
    return data + sw


def parse_unwrapped(data: bytes) -> tuple[bytes, int]:
    """(card data, card status word) of an UNWRAP answer."""
    return split_answer(data)


def encipher_pin(pin: str) -> bytes:
    """ENCIPHER PIN: the digits (ASCII); the answer is the card's VERIFY (84 20 00 88) under SM."""
    if not 4 <= len(pin) <= 12 or not pin.isascii() or not pin.isdigit():
        raise SamApduError("a PIN is 4 to 12 digits", reason="range")
    return _apdu(INS_ENCIPHER_PIN, data=pin.encode("ascii"))


def mac_record(signed_record: bytes) -> bytes:
    """MAC RECORD: a signed record from the card (60); the answer is sequence (4) || SAM MAC (16)."""
    return _apdu(INS_MAC_RECORD, data=_length(signed_record, SIGNED_LEN, "a signed record"))


def parse_record_mac(data: bytes) -> tuple[int, bytes]:
    """(SAM sequence number, SAM MAC) of a MAC RECORD answer."""
    _length(data, 4 + MAC_LEN, "a MAC RECORD answer")
    return int(struct.unpack(">I", data[:4])[0]), bytes(data[4:])


def get_sequence() -> bytes:
    """GET SEQUENCE: the answer is the last sequence number the SAM gave (4; 0 before the first record)."""
    return _apdu(INS_GET_SEQUENCE)


def parse_sequence(data: bytes) -> int:
    return parse_time(data)


def record_mac_message(signed_record: bytes, sequence: int) -> bytes:
    """What the SAM MACs: the card's signed record (60) then the SAM's sequence number (4)."""
    if not 0 < sequence <= _U32:
        raise SamApduError("a SAM sequence is 1..2**32-1", reason="range", sequence=sequence)
    return _length(signed_record, SIGNED_LEN, "a signed record") + struct.pack(">I", sequence)


def sam_record_mac(sam_key: bytes, signed_record: bytes, sequence: int) -> bytes:
    """The SAM's AES-CMAC over a record and its sequence (the SAM makes it; the issuer recomputes it)."""
    return mac(sam_key, record_mac_message(signed_record, sequence))


def verify_sam_record_mac(sam_key: bytes, signed_record: bytes, sequence: int, tag: bytes) -> bool:
    """Whether tag is that SAM's MAC of this record at this sequence (constant-time compare)."""
    return verify_mac(sam_key, record_mac_message(signed_record, sequence), tag)
