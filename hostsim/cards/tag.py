"""A contactless storage tag (MIFARE Classic, Ultralight, FeliCa...) as a PC/SC reader presents it.

A storage tag runs no ISO 7816-4 application: the reader builds its ATR (PC/SC Part 3, "Supplemental Document
for Contactless ICCs", 3.1.3.2.3) and answers the pseudo-APDU GET DATA (FF CA, Part 3 3.2.2.1.3) itself:
    3B 8F 80 01 | 80 4F 0C A0 00 00 03 06 SS NN NN 00 00 00 00 | TCK
T0 8F: TD1 follows, 15 historical bytes; TD1 80: T=0, TD2 follows; TD2 01: T=1. Historical bytes: category
80, then the AID data object 4F 0C: the PC/SC RID A0 00 00 03 06, the standard SS, the card name NN NN and
4 RFU bytes. TCK is the XOR of T0 up to the last historical byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import ConfigError

__all__ = ["PCSC_RID", "TAG_KINDS", "TagCard", "TagKind", "build_storage_atr"]

PCSC_RID = bytes.fromhex("A000000306")

SW_OK = b"\x90\x00"
SW_END_OF_DATA = b"\x62\x82"            # Le asked more than the UID holds: the UID, then this warning
SW_WRONG_LENGTH = b"\x67\x00"
SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
CLA_PCSC = 0xFF
INS_GET_DATA = 0xCA


@dataclass(frozen=True)
class TagKind:
    """Standard byte SS and card name NN NN (PC/SC Part 3 Supplemental Document), the UID sizes it has."""
    standard: int
    card_name: int
    uid_sizes: tuple[int, ...]


_ISO14443A = (4, 7, 10)   # single, double, triple size UID (ISO/IEC 14443-3)
# SS 03: ISO 14443 A part 3; SS 11: FeliCa (its IDm is 8 bytes). Names as pcsc-tools' smartcard_list.txt
# spells them "(as per PCSC std part3)".
TAG_KINDS = {
    "mifare_classic_1k": TagKind(0x03, 0x0001, _ISO14443A),
    "mifare_classic_4k": TagKind(0x03, 0x0002, _ISO14443A),
    "mifare_ultralight": TagKind(0x03, 0x0003, (7,)),
    "mifare_mini": TagKind(0x03, 0x0026, _ISO14443A),
    "mifare_ultralight_c": TagKind(0x03, 0x003A, (7,)),
    "felica": TagKind(0x11, 0x003B, (8,)),
}


def build_storage_atr(standard: int, card_name: int) -> bytes:
    """The ATR a PC/SC reader builds for a storage card (Part 3 3.1.3.2.3).

    >>> build_storage_atr(0x03, 0x0001).hex(" ").upper()
    '3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A'
    """
    if not (0 <= standard <= 0xFF and 0 <= card_name <= 0xFFFF):
        raise ConfigError("storage card standard is one byte, its card name two", standard=standard,
                          card_name=card_name)
    aid = PCSC_RID + bytes([standard]) + card_name.to_bytes(2, "big") + bytes(4)
    historical = b"\x80\x4f" + bytes([len(aid)]) + aid
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


class TagCard:
    """A storage tag in a PC/SC contactless reader: its built ATR and the reader's GET DATA answers."""

    def __init__(self, uid: bytes, kind: str = "mifare_classic_1k", ats_historical: bytes = b"") -> None:
        spec = TAG_KINDS.get(kind)
        if spec is None:
            raise ConfigError("unknown tag kind", kind=kind, known=",".join(sorted(TAG_KINDS)))
        if len(uid) not in spec.uid_sizes:
            raise ConfigError("tag UID has a size this kind of tag does not have", kind=kind,
                              length=len(uid), sizes=",".join(map(str, spec.uid_sizes)))
        self._uid = bytes(uid)
        self.kind = kind
        self.atr = build_storage_atr(spec.standard, spec.card_name)
        # P1=01 answers the historical bytes of an ISO 14443-4 card's ATS; a storage tag has none
        self._ats_historical = bytes(ats_historical)

    def __repr__(self) -> str:   # the UID is the card's number: never whole in a log
        return f"TagCard(kind={self.kind}, uid=…{self._uid[-2:].hex().upper()})"

    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def reset(self) -> None: ...

    def apdu(self, command: bytes) -> bytes:
        if len(command) < 4 or command[0] != CLA_PCSC or command[1] != INS_GET_DATA:
            return SW_INS_NOT_SUPPORTED
        if len(command) != 5:            # GET DATA is case 2: header and Le, no data
            return SW_WRONG_LENGTH
        p1, p2, le = command[2], command[3], command[4]
        if p2 != 0x00:
            return SW_FUNCTION_NOT_SUPPORTED
        if p1 == 0x00:
            data = self._uid
        elif p1 == 0x01 and self._ats_historical:
            data = self._ats_historical
        else:
            return SW_FUNCTION_NOT_SUPPORTED
        if le == 0 or le == len(data):   # Le 00: the full length
            return data + SW_OK
        if le < len(data):
            return bytes([0x6C, len(data)])   # wrong Le: 6C and the exact length
        return data + SW_END_OF_DATA
