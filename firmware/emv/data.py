"""The transaction's data objects (tag -> value), with TVR and TSI as named bits, and DOL building.

TVR bit layout: EMV 4.3/4.4 Book 3 Annex C5 (4.3 numbering, which still names 'SDA failed').
TSI bit layout: Book 3 Annex C6. DOL rules: Book 3 5.4.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from enum import Enum

from contracts.errors import CardError, MessageError
from firmware import tlv

__all__ = ["DataStore", "Tsi", "TsiBit", "Tvr", "TvrBit", "build_dol", "parse_dol", "unpredictable_number"]


class TvrBit(Enum):
    """(byte 1-5, bit 8-1) of the Terminal Verification Results, Book 3 Annex C5."""

    ODA_NOT_PERFORMED = (1, 8)
    SDA_FAILED = (1, 7)
    ICC_DATA_MISSING = (1, 6)
    CARD_ON_EXCEPTION_FILE = (1, 5)
    DDA_FAILED = (1, 4)
    CDA_FAILED = (1, 3)
    SDA_SELECTED = (1, 2)
    DIFFERENT_APPLICATION_VERSIONS = (2, 8)
    EXPIRED_APPLICATION = (2, 7)
    APPLICATION_NOT_YET_EFFECTIVE = (2, 6)
    SERVICE_NOT_ALLOWED = (2, 5)
    NEW_CARD = (2, 4)
    CARDHOLDER_VERIFICATION_NOT_SUCCESSFUL = (3, 8)
    UNRECOGNISED_CVM = (3, 7)
    PIN_TRY_LIMIT_EXCEEDED = (3, 6)
    PIN_PAD_NOT_PRESENT_OR_NOT_WORKING = (3, 5)
    PIN_REQUIRED_NOT_ENTERED = (3, 4)
    ONLINE_PIN_ENTERED = (3, 3)
    FLOOR_LIMIT_EXCEEDED = (4, 8)
    LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED = (4, 7)
    UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED = (4, 6)
    RANDOMLY_SELECTED_ONLINE = (4, 5)
    MERCHANT_FORCED_ONLINE = (4, 4)
    DEFAULT_TDOL_USED = (5, 8)
    ISSUER_AUTHENTICATION_FAILED = (5, 7)
    SCRIPT_FAILED_BEFORE_FINAL_GENERATE_AC = (5, 6)
    SCRIPT_FAILED_AFTER_FINAL_GENERATE_AC = (5, 5)


class TsiBit(Enum):
    """(byte, bit) of the Transaction Status Information, Book 3 Annex C6."""

    ODA_PERFORMED = (1, 8)
    CARDHOLDER_VERIFICATION_PERFORMED = (1, 7)
    CARD_RISK_MANAGEMENT_PERFORMED = (1, 6)
    ISSUER_AUTHENTICATION_PERFORMED = (1, 5)
    TERMINAL_RISK_MANAGEMENT_PERFORMED = (1, 4)
    SCRIPT_PROCESSING_PERFORMED = (1, 3)


class _Bits:
    size = 0

    def __init__(self) -> None:
        self._value = bytearray(self.size)

    def _set(self, position: tuple[int, int]) -> None:
        byte, bit = position
        self._value[byte - 1] |= 1 << (bit - 1)

    def _get(self, position: tuple[int, int]) -> bool:
        byte, bit = position
        return bool(self._value[byte - 1] & (1 << (bit - 1)))

    def __bytes__(self) -> bytes:
        return bytes(self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._value.hex().upper()})"


class Tvr(_Bits):
    size = 5

    def set(self, bit: TvrBit) -> None:
        self._set(bit.value)

    def __contains__(self, bit: TvrBit) -> bool:
        return self._get(bit.value)

    def names(self) -> list[str]:
        return [b.name for b in TvrBit if b in self]


class Tsi(_Bits):
    size = 2

    def set(self, bit: TsiBit) -> None:
        self._set(bit.value)

    def __contains__(self, bit: TsiBit) -> bool:
        return self._get(bit.value)


# Data element formats that change DOL padding (Book 3 5.4; formats from Book 3 Annex A1).
NUMERIC_TAGS = frozenset({
    0x9F02, 0x9F03, 0x5F2A, 0x5F36, 0x9F1A, 0x9A, 0x9C, 0x9F21, 0x9F15, 0x5F28, 0x9F42, 0x9F44,
    0x9F41, 0x5F34, 0x9F11, 0x5F24, 0x5F25, 0x9F39, 0x9F3C, 0x9F3D, 0x9F01, 0x5F30,
})
COMPRESSED_NUMERIC_TAGS = frozenset({0x5A, 0x9F20})


class DataStore:
    """Tag -> value for one transaction. TVR (95) and TSI (9B) read live from their bit objects.

    Values the card supplied in records are tracked: a primitive object seen twice is an error
    (Book 3 10.2).
    """

    def __init__(self) -> None:
        self._values: dict[int, bytes] = {}
        self._from_card: set[int] = set()
        self.tvr = Tvr()
        self.tsi = Tsi()

    def get(self, tag: int) -> bytes | None:
        if tag == 0x95:
            return bytes(self.tvr)
        if tag == 0x9B:
            return bytes(self.tsi)
        return self._values.get(tag)

    def __contains__(self, tag: int) -> bool:
        return tag in (0x95, 0x9B) or tag in self._values

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def set(self, tag: int, value: bytes) -> None:
        self._values[tag] = bytes(value)

    def set_from_card(self, tag: int, value: bytes) -> None:
        """Store a primitive object read from a record; a repeat ends the transaction (Book 3 10.2)."""
        if tag in self._from_card:
            raise CardError("card returned a data object twice", tag=f"{tag:X}")
        self._from_card.add(tag)
        self._values[tag] = bytes(value)

    def add_record(self, template_value: bytes) -> None:
        """Store every object of a record template's value."""
        try:
            objects = tlv.parse(template_value)
        except MessageError as exc:
            raise CardError("record is not valid BER-TLV") from exc
        for tag, value in objects:
            self.set_from_card(tag, value)

    def forget(self, tag: int) -> None:
        """Wipe a sensitive value from the store (e.g. track 2 once the result is built)."""
        self._values.pop(tag, None)


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """Split a DOL into (tag, length) pairs; a DOL is tags and one-byte lengths, no values (Book 3 5.4)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(dol):
        first = dol[i]
        tag, i = first, i + 1
        if first & 0x1F == 0x1F:
            for _ in range(3):
                if i >= len(dol):
                    raise CardError("DOL tag truncated")
                tag = (tag << 8) | dol[i]
                i += 1
                if not dol[i - 1] & 0x80:
                    break
            else:
                raise CardError("DOL tag longer than 4 bytes")
        if i >= len(dol):
            raise CardError("DOL entry lacks its length", tag=f"{tag:X}")
        if dol[i] & 0x80:
            raise CardError("DOL length form not allowed", tag=f"{tag:X}")
        out.append((tag, dol[i]))
        i += 1
    return out


def _fit(tag: int, value: bytes, length: int) -> bytes:
    if len(value) == length:
        return value
    if len(value) > length:     # numeric: keep the rightmost bytes; everything else the leftmost
        return value[len(value) - length:] if tag in NUMERIC_TAGS else value[:length]
    if tag in NUMERIC_TAGS:
        return bytes(length - len(value)) + value
    if tag in COMPRESSED_NUMERIC_TAGS:
        return value + b"\xff" * (length - len(value))
    return value + bytes(length - len(value))


def build_dol(dol: bytes, store: DataStore, extra: dict[int, bytes] | None = None) -> bytes:
    """The concatenated values a DOL asks for, padded or truncated per Book 3 5.4.

    Unknown or constructed tags and absent values become zeros of the requested length.
    """
    out = bytearray()
    for tag, length in parse_dol(dol):
        value = (extra or {}).get(tag)
        if value is None:
            value = store.get(tag)
        if value is None or tlv.is_constructed(tag):
            out += bytes(length)
        else:
            out += _fit(tag, value, length)
    return bytes(out)


def unpredictable_number() -> bytes:
    """Four random bytes for 9F37 (Book 4 6.5.6)."""
    return secrets.token_bytes(4)
