"""Strict BER-TLV (ISO/IEC 8825-1, as used by ISO 7816-4 and EMV Book 3 annex B).

parse() returns (tag, value) pairs; constructed values (bit 6 of the first tag byte) can be parsed
again. Anything malformed - truncated tag, length or value, an indefinite or over-long length -
raises MessageError. Padding bytes 0x00/0xFF between objects are skipped (EMV Book 3, B1).
"""

from __future__ import annotations

from contracts.errors import MessageError

__all__ = ["MAX_DEPTH", "encode", "find", "is_constructed", "parse", "parse_single", "parse_unique"]

# Deepest template nesting find() follows. EMV nests at most 4 levels (6F > A5 > BF0C > 61, Book 1 11.3.4);
# more is hostile input, refused with MessageError instead of exhausting the stack (issue 10).
MAX_DEPTH = 16


def _tag(data: bytes, i: int) -> tuple[int, int]:
    first = data[i]
    tag = first
    i += 1
    if first & 0x1F == 0x1F:
        for _ in range(3):
            if i >= len(data):
                raise MessageError("TLV tag truncated", offset=i)
            tag = (tag << 8) | data[i]
            i += 1
            if not data[i - 1] & 0x80:
                break
        else:
            raise MessageError("TLV tag longer than 4 bytes", offset=i)
    return tag, i


def _length(data: bytes, i: int) -> tuple[int, int]:
    if i >= len(data):
        raise MessageError("TLV length missing", offset=i)
    first = data[i]
    i += 1
    if first < 0x80:
        return first, i
    count = first & 0x7F
    if count == 0 or count > 3:
        raise MessageError("TLV length form not allowed", offset=i - 1)
    if i + count > len(data):
        raise MessageError("TLV length truncated", offset=i)
    return int.from_bytes(data[i:i + count], "big"), i + count


def parse(data: bytes) -> list[tuple[int, bytes]]:
    """Parse one level of BER-TLV objects.

    ATC (9F36, two-byte tag) then PAN (5A), as a card answers GET DATA / READ RECORD:

    >>> [(f"{tag:X}", value.hex()) for tag, value in parse(bytes.fromhex("9F3602002A5A084761739001010010"))]
    [('9F36', '002a'), ('5A', '4761739001010010')]
    >>> parse(bytes.fromhex("9F360200"))
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: TLV value truncated (length=2 tag=9F36)
    >>> parse(bytes.fromhex("5A80"))         # indefinite length is not BER-TLV as EMV uses it
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: TLV length form not allowed (offset=1)
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):
            i += 1
            continue
        tag, value, i = _object(data, i)
        out.append((tag, value))
    return out


def _object(data: bytes, i: int) -> tuple[int, bytes, int]:
    """The object starting at offset i: tag, value and the offset after it."""
    tag, i = _tag(data, i)
    length, i = _length(data, i)
    if i + length > len(data):
        raise MessageError("TLV value truncated", tag=f"{tag:X}", length=length)
    return tag, bytes(data[i:i + length]), i + length


def parse_single(data: bytes) -> tuple[int, bytes]:
    """Exactly one object filling data: no padding or trailing bytes (a record is one 70 template).

    >>> parse_single(bytes.fromhex("70035A0112"))
    (112, b'Z\\x01\\x12')
    >>> parse_single(bytes.fromhex("70035A0112FFFF"))
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: TLV object followed by other bytes (tag=70 trailing=2)
    """
    if not data:
        raise MessageError("TLV object missing")
    tag, value, end = _object(data, 0)
    if end != len(data):
        raise MessageError("TLV object followed by other bytes", tag=f"{tag:X}", trailing=len(data) - end)
    return tag, value


def parse_unique(data: bytes) -> dict[int, bytes]:
    """One level of BER-TLV as a dict; a tag that appears twice is an error (EMV Book 3 5.2.2).

    >>> {f"{tag:X}": value.hex() for tag, value in parse_unique(bytes.fromhex("9F2701809F3602002A")).items()}
    {'9F27': '80', '9F36': '002a'}
    >>> parse_unique(bytes.fromhex("9F2701809F270140"))
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: TLV repeats a data object (tag=9F27)
    """
    fields: dict[int, bytes] = {}
    for tag, value in parse(data):
        if tag in fields:
            raise MessageError("TLV repeats a data object", tag=f"{tag:X}")
        fields[tag] = value
    return fields


def is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def find(data: bytes, tag: int) -> bytes | None:
    """Depth-first search for the first object with tag.

    >>> find(bytes.fromhex("77099F2701809F3602002A"), 0x9F36).hex()     # inside template 77
    '002a'
    >>> find(bytes.fromhex("77099F2701809F3602002A"), 0x9F26) is None
    True
    >>> nested = bytes.fromhex("5A00")
    >>> for _ in range(MAX_DEPTH + 1):
    ...     nested = encode(0x70, nested)
    >>> find(nested, 0x5A)
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: TLV templates nested too deeply (limit=16)
    """
    return _find(data, tag, 0)


def _find(data: bytes, tag: int, depth: int) -> bytes | None:
    if depth > MAX_DEPTH:
        raise MessageError("TLV templates nested too deeply", limit=MAX_DEPTH)
    for t, v in parse(data):
        if t == tag:
            return v
        if is_constructed(t):
            hit = _find(v, tag, depth + 1)
            if hit is not None:
                return hit
    return None


def encode(tag: int, value: bytes) -> bytes:
    """One object, the length in the shortest form (ISO/IEC 8825-1 8.1.3).

    >>> encode(0x9F36, bytes.fromhex("002A")).hex().upper()
    '9F3602002A'
    >>> encode(0x70, bytes(200))[:3].hex().upper()        # 128-255 bytes: 81 then one length byte
    '7081C8'
    """
    tag_bytes = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    elif n <= 0xFFFF:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    elif n <= 0xFFFFFF:
        length = bytes([0x83]) + n.to_bytes(3, "big")
    else:
        raise MessageError("TLV value too long", length=n)
    return tag_bytes + length + value
