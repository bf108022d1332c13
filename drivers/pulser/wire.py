"""The pump node's UART protocol: small framed requests from the terminal, one reply each (docs/pulser.md).

    SOF 0xA5 | LEN | SEQ | TYPE | PAYLOAD (LEN bytes) | CRC-16 (big-endian)

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR; check value of
"123456789" is 0x29B1 in the reveng CRC catalogue) over LEN, SEQ, TYPE and PAYLOAD. A reply has the
request's SEQ and TYPE | 0x80, or TYPE 0xFF (NAK) with an error code. The terminal numbers requests 1..255;
the node answers a repeated SEQ with its last reply again without acting twice (a lost reply is retried).

Pure functions over bytes. This module also runs unchanged under MicroPython: no dataclasses, enum, typing,
__future__ imports or f-strings, and no `del` of a bytearray slice (MicroPython 1.27 refuses it).

>>> hex(crc16(b"123456789"))
'0x29b1'
>>> encode(7, STATUS, b"").hex()
'a5000701452a'
>>> r = Reader(); r.feed(encode(7, STATUS, b"") + b"junk"); r.next()
(7, 1, b'')
"""

try:  # one error hierarchy on CPython; plain ValueError where contracts.errors cannot load (MicroPython)
    from contracts.errors import MessageError as _ErrorBase
except Exception:  # noqa: BLE001 - any import failure means "not on the full stack"
    _ErrorBase = ValueError  # type: ignore[misc,assignment]

__all__ = [
    "AUTHORIZE", "CONFIG", "MAX_PAYLOAD", "NAK", "NAK_BUSY", "NAK_LENGTH", "NAK_TYPE", "NAK_UNCONFIGURED",
    "NAK_VALUE",
    "REPLY", "RESET", "RESUME", "SOF", "STATUS", "STOP", "SUSPEND", "TOTALS", "Reader", "WireError", "crc16",
    "encode", "get_u", "put_u",
]

SOF = 0xA5
MAX_PAYLOAD = 48
REPLY = 0x80                 # a reply's TYPE is the request's | REPLY

STATUS, AUTHORIZE, STOP, SUSPEND, RESUME, RESET, TOTALS, CONFIG = 1, 2, 3, 4, 5, 6, 7, 8
NAK = 0xFF
NAK_TYPE, NAK_LENGTH, NAK_BUSY, NAK_UNCONFIGURED, NAK_VALUE = 1, 2, 3, 4, 5   # the NAK's one payload byte


class WireError(_ErrorBase):
    """A frame or payload that breaks the protocol."""


def crc16(data, crc=0xFFFF):  # type: (bytes, int) -> int
    """CRC-16/CCITT-FALSE of data."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode(seq, kind, payload):  # type: (int, int, bytes) -> bytes
    """One frame."""
    if not 0 <= seq <= 255 or not 0 <= kind <= 255:
        raise WireError("seq and type are one byte each")
    if len(payload) > MAX_PAYLOAD:
        raise WireError("payload too long")
    body = bytes((len(payload), seq, kind)) + bytes(payload)
    return bytes((SOF,)) + body + crc16(body).to_bytes(2, "big")


def put_u(value, size):  # type: (int, int) -> bytes
    """An unsigned big-endian field; WireError when value does not fit."""
    if value < 0 or value >> (8 * size):
        raise WireError("field out of range")
    return value.to_bytes(size, "big")


def get_u(data, start, size):  # type: (bytes, int, int) -> int
    """The unsigned big-endian field at data[start:start + size]; WireError when the payload is short."""
    if start + size > len(data):
        raise WireError("payload too short")
    return int.from_bytes(bytes(data[start:start + size]), "big")


class Reader:
    """Splits a byte stream into frames: (seq, type, payload). Bytes before a SOF, and frames whose length
    or CRC is wrong, are skipped (counted in .dropped); the search resumes one byte after the bad SOF."""

    def __init__(self):  # type: () -> None
        self._buf = bytearray()
        self.dropped = 0

    def feed(self, data):  # type: (bytes) -> None
        self._buf.extend(data)
        if len(self._buf) > 4 * (MAX_PAYLOAD + 6):       # a babbling line never grows memory
            self._buf[:len(self._buf) - 2 * (MAX_PAYLOAD + 6)] = b""
            self.dropped += 1

    def clear(self):  # type: () -> None
        """Forget a partial frame (the line went quiet in the middle of one: noise, a lost byte)."""
        self._buf[:] = b""

    def pending(self):  # type: () -> int
        return len(self._buf)

    def next(self):  # type: () -> tuple[int, int, bytes] | None
        """The next whole good frame, or None until more bytes arrive."""
        buf = self._buf
        while True:
            start = buf.find(bytes((SOF,)))
            if start < 0:
                buf[:] = b""
                return None
            if start:
                buf[:start] = b""
            if len(buf) < 2:
                return None
            size = buf[1]
            if size > MAX_PAYLOAD:
                self.dropped += 1
                buf[:1] = b""
                continue
            end = 4 + size + 2
            if len(buf) < end:
                return None
            body = bytes(buf[1:4 + size])
            if crc16(body) != int.from_bytes(bytes(buf[4 + size:end]), "big"):
                self.dropped += 1
                buf[:1] = b""
                continue
            buf[:end] = b""
            return body[1], body[2], body[3:]
