"""Contactless storage tags in a PC/SC reader: recognize the ATR the reader built for one and read its UID.

PC/SC Part 3 3.1.3.2.3 (and its Supplemental Document): for a storage card (MIFARE Classic, Ultralight,
FeliCa...) the reader builds 3B 8n 80 01, historical bytes 80 4F 0C A0 00 00 03 06 SS NN NN 00 00 00 00,
and TCK. A contactless smart card (ISO 14443-4) gets 3B 8n 80 01 with its ATS bytes instead and is read
as a chip card. The UID comes from the reader's GET DATA pseudo-APDU FF CA 00 00 00 (Part 3 3.2.2.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import CardError
from firmware.emv.apdu import Transmitter, exchange

__all__ = ["GET_UID", "StorageCard", "parse_uid", "read_uid", "storage_card", "tag_number"]

GET_UID = bytes.fromhex("FFCA000000")       # Le 00: the full UID
_AID_PREFIX = bytes.fromhex("804F0CA000000306")   # category 80, AID tag 4F, length 0C, PC/SC RID
# ISO/IEC 14443-3 single, double and triple size UIDs; 8: an ISO 15693 UID or a FeliCa IDm
UID_SIZES = (4, 7, 8, 10)
RANDOM_UID0 = 0x08   # a single size UID starting 08 is a random ID, new at each activation (NXP AN10927)


@dataclass(frozen=True)
class StorageCard:
    standard: int     # SS: 03 ISO 14443 A part 3, 11 FeliCa...
    card_name: int    # NN NN: 0001 MIFARE Classic 1K...


def storage_card(atr: bytes) -> StorageCard | None:
    """What a PC/SC storage card ATR names; None for any other ATR.

    >>> storage_card(bytes.fromhex("3B8F8001804F0CA000000306030001000000006A"))
    StorageCard(standard=3, card_name=1)
    >>> storage_card(bytes.fromhex("3B8F8001804F0CA000000306030001000000006B")) is None   # TCK wrong
    True
    >>> storage_card(bytes.fromhex("3BE700008131FE454643454D563031B6")) is None   # a contact card
    True
    """
    if len(atr) < 5 or atr[0] != 0x3B or atr[1] >> 4 != 0x8 or atr[2:4] != b"\x80\x01":
        return None
    count = atr[1] & 0x0F
    historical = atr[4:4 + count]
    if count != 15 or len(atr) != 4 + count + 1 or not historical.startswith(_AID_PREFIX):
        return None
    tck = 0
    for byte in atr[1:]:
        tck ^= byte
    if tck != 0:
        return None
    return StorageCard(historical[8], int.from_bytes(historical[9:11], "big"))


def parse_uid(response: bytes) -> bytes:
    """The UID in a GET DATA answer (data + 90 00); CardError names what is wrong, never the UID.

    >>> parse_uid(bytes.fromhex("04A1B2C3D4E5F6 9000")).hex()
    '04a1b2c3d4e5f6'
    >>> parse_uid(bytes.fromhex("6A81"))
    Traceback (most recent call last):
    contracts.errors.CardError: tag did not give its UID (sw=6A81)
    """
    if len(response) < 2 or response[-2:] != b"\x90\x00":
        raise CardError("tag did not give its UID", sw=response[-2:].hex().upper())
    uid = response[:-2]
    if len(uid) not in UID_SIZES:
        raise CardError("tag UID has an unknown size", length=len(uid))
    if len(uid) == 4 and uid[0] == RANDOM_UID0:
        raise CardError("tag has a random UID; it cannot be recognized again")
    return bytes(uid)


def read_uid(reader: Transmitter) -> bytes:
    """Send GET DATA for the UID (6C xx is re-sent by the reader driver) and parse the answer."""
    answer = exchange(reader, GET_UID, "get uid")
    return parse_uid(answer.data + answer.sw.to_bytes(2, "big"))


def tag_number(uid: bytes) -> str:
    """A tag's card number as the registry knows it: "U" and its UID in upper-case hex (fleet design).

    >>> tag_number(bytes.fromhex("04a1b2c3d4e5f6"))
    'U04A1B2C3D4E5F6'
    """
    return "U" + uid.hex().upper()
