"""Wayne DART wire codec: CRC, packed BCD, 0xFA escaping, short and data frames, a frame splitter.

Pure functions over bytes, shared by the master driver and the pump simulator. Every fact here is from the
Wayne DART line protocol / application protocol spec (public DART material).

This module must also run unchanged under MicroPython: no dataclasses, enum, typing or __future__ imports,
no f-strings; only plain classes, tuples, bytes/bytearray and ints. Annotations are never evaluated there.
"""

try:  # one error hierarchy on CPython; plain ValueError where contracts.errors cannot load (MicroPython)
    from contracts.errors import MessageError as _ErrorBase
except Exception:  # noqa: BLE001 - any import failure means "not on the full stack"
    _ErrorBase = ValueError  # type: ignore[misc,assignment]

__all__ = [
    "ACK", "ACKPOLL", "ADDR_FIRST", "ADDR_LAST", "CD1", "CD2", "CD3", "CD4", "CD5", "CD101",
    "CMD_AUTHORIZE", "CMD_FILLING_INFO", "CMD_IDENTITY", "CMD_PARAMETERS", "CMD_RESET", "CMD_RESUME",
    "CMD_RETURN_PRICES", "CMD_STATUS", "CMD_STOP", "CMD_SUSPEND", "CMD_SWITCH_OFF",
    "DATA", "DC1", "DC2", "DC3", "DC5", "DC7", "DC9", "DC101",
    "DLE", "EOT", "ETX", "NAK", "NOZZLE_OUT", "POLL", "RX_ACCEPT", "RX_DUPLICATE",
    "RX_REJECT", "SF", "ST_AUTHORIZED", "ST_FILLING", "ST_FILLING_COMPLETED", "ST_MAX_REACHED",
    "ST_NOT_PROGRAMMED", "ST_RESET", "ST_SUSPENDED", "ST_SWITCHED_OFF", "BcdError", "CrcError",
    "DartError", "Frame", "FrameError", "FrameSplitter", "address_pump", "bcd_decode",
    "bcd_encode", "crc16", "decode", "decode_resync",
    "encode_data", "encode_frame", "encode_short", "escape", "next_txn",
    "pump_address", "rx_verdict", "unescape",
]

# Line protocol control bytes: high nibble is the kind, low nibble the TX# (DART line protocol spec).
DATA = 0x30
POLL = 0x20
EOT = 0x70
NAK = 0x50
ACK = 0xC0
ACKPOLL = 0xE0
_KINDS = (DATA, POLL, EOT, NAK, ACK, ACKPOLL)

ETX = 0x03   # end of text, before the stop flag of a data frame
SF = 0xFA    # stop flag, ends every frame
DLE = 0x10   # inserted before a data/CRC byte equal to SF; not covered by the CRC

ADDR_FIRST = 0x50  # pump 1
ADDR_LAST = 0x6F   # pump 32
MAX_FRAME = 600    # unescaped bytes; the splitter drops anything longer without a stop flag

# Receiver's verdict on a data frame's TX# (DART line protocol spec, transaction numbering).
RX_ACCEPT = 0      # new data: ACK and use it
RX_DUPLICATE = 1   # a retry of what we already have: ACK and drop
RX_REJECT = 2      # out of sequence: NAK

# Application layer (Wayne DART application protocol spec): transaction codes, CD1 commands, DC1 states.
CD1, CD2, CD3, CD4, CD5, CD101 = 0x01, 0x02, 0x03, 0x04, 0x05, 0x65   # to the pump
DC1, DC2, DC3, DC5, DC7, DC9, DC101 = 0x01, 0x02, 0x03, 0x05, 0x07, 0x09, 0x65   # from the pump
CMD_STATUS, CMD_PARAMETERS, CMD_IDENTITY, CMD_FILLING_INFO = 0x00, 0x02, 0x03, 0x04
CMD_RESET, CMD_AUTHORIZE, CMD_STOP, CMD_SWITCH_OFF = 0x05, 0x06, 0x08, 0x0A
CMD_SUSPEND, CMD_RESUME, CMD_RETURN_PRICES = 0x0D, 0x0E, 0x0F
ST_NOT_PROGRAMMED, ST_RESET, ST_AUTHORIZED, ST_FILLING = 0, 1, 2, 4
ST_FILLING_COMPLETED, ST_MAX_REACHED, ST_SWITCHED_OFF, ST_SUSPENDED = 5, 6, 7, 8   # 8 is optional
NOZZLE_OUT = 0x10  # DC3 nozzle byte: bit 4 set while the nozzle is out; low nibble is the nozzle number



class DartError(_ErrorBase):
    """A DART frame or field is malformed; context says what and where."""

    def __init__(self, message: str, **context: object) -> None:
        # super(), not _ErrorBase.__init__: MicroPython's built-in exception types have no __init__ attribute
        super().__init__(message)
        self.context = context


class CrcError(DartError):
    """The frame's CRC-16 does not match its content."""


class FrameError(DartError):
    """The framing (length, ETX, stop flag, escaping, control byte, transaction lengths) is wrong."""


class BcdError(DartError):
    """A packed BCD field holds a non-decimal nibble or a value that does not fit."""


def pump_address(pump: int) -> int:
    """Pump number 1..32 -> line address 0x50..0x6F."""
    if pump < 1 or pump > 32:
        raise FrameError("pump number out of range", pump=pump)
    return 0x4F + pump


def address_pump(addr: int) -> int:
    """Line address 0x50..0x6F -> pump number 1..32."""
    if addr < ADDR_FIRST or addr > ADDR_LAST:
        raise FrameError("address out of range", addr=addr)
    return addr - 0x4F


def next_txn(txn: int) -> int:
    """The TX# after txn: 0 (used once, after a restart) -> 1 ... 0xF -> 1."""
    return 1 if txn >= 0xF else txn + 1


def rx_verdict(last: int, txn: int) -> int:
    """Judge a received data frame's TX# against the last accepted one (-1: none since we started).

    TX# 0 means the peer restarted and is always accepted, even right after another 0: a sender that
    reset after 3 NAKs must get through, and every DART command and status is idempotent, so taking a
    retried first frame twice is harmless while dropping it would lose it. The same TX# again is a retry
    (ACK, drop); the successor is accepted, both wraps F->0 and F->1 included; anything else is NAKed.
    """
    if last < 0 or txn == 0:
        return RX_ACCEPT
    if txn == last:
        return RX_DUPLICATE
    if txn == last + 1 or (last == 0xF and txn in (0, 1)):
        return RX_ACCEPT
    return RX_REJECT


def crc16(data: bytes | bytearray, crc: int = 0) -> int:
    """CRC-16/ARC: reflected poly 0xA001, init 0, no final xor. crc16(b"123456789") == 0xBB3D."""
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def bcd_encode(value: int, nbytes: int) -> bytes:
    """Non-negative int -> packed BCD, most significant digit first, zero padded to nbytes."""
    if value < 0 or value >= 10 ** (2 * nbytes):
        raise BcdError("value does not fit", value=value, nbytes=nbytes)
    out = bytearray(nbytes)
    for i in range(nbytes - 1, -1, -1):
        low = value % 10
        value //= 10
        out[i] = ((value % 10) << 4) | low
        value //= 10
    return bytes(out)


def bcd_decode(data: bytes) -> int:
    """Packed BCD -> int; a nibble above 9 is a BcdError."""
    value = 0
    for b in data:
        hi = b >> 4
        lo = b & 0x0F
        if hi > 9 or lo > 9:
            raise BcdError("not a BCD byte", byte=b)
        value = value * 100 + hi * 10 + lo
    return value


def escape(data: bytes) -> bytes:
    """Insert DLE before every SF byte (data and CRC bytes only)."""
    out = bytearray()
    for b in data:
        if b == SF:
            out.append(DLE)
        out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Drop the DLE put before an SF; a bare SF inside the data is a FrameError."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == DLE and i + 1 < n and data[i + 1] == SF:
            out.append(SF)
            i += 2
            continue
        if b == SF:
            raise FrameError("unescaped stop flag inside frame", offset=i)
        out.append(b)
        i += 1
    return bytes(out)


class Frame:
    """One decoded frame. kind is DATA/POLL/EOT/NAK/ACK/ACKPOLL; txn the low nibble of the control byte;
    transactions a list of (trans, data bytes) for DATA, empty otherwise."""

    def __init__(self, addr: int, kind: int, txn: int = 0,
                 transactions: "list[tuple[int, bytes]] | None" = None) -> None:
        self.addr = addr
        self.kind = kind
        self.txn = txn
        self.transactions = transactions if transactions is not None else []

    @property
    def pump(self) -> int:
        return address_pump(self.addr)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.addr == other.addr and self.kind == other.kind and self.txn == other.txn
                and self.transactions == other.transactions)

    def __repr__(self) -> str:
        return "Frame(addr=0x{:02X}, kind=0x{:02X}, txn={}, transactions={!r})".format(  # noqa: UP032
            self.addr, self.kind, self.txn, self.transactions)


def _check_addr(addr: int) -> None:
    if addr < ADDR_FIRST or addr > ADDR_LAST:
        raise FrameError("address out of range", addr=addr)


def encode_short(addr: int, kind: int, txn: int = 0) -> bytes:
    """ADR CTRL SF, e.g. encode_short(0x50, POLL) == b"\\x50\\x20\\xfa"."""
    _check_addr(addr)
    if kind not in _KINDS or kind == DATA or txn < 0 or txn > 0xF:
        raise FrameError("bad short frame control", kind=kind, txn=txn)
    return bytes((addr, kind | txn, SF))


def encode_data(addr: int, txn: int, transactions: "list[tuple[int, bytes]]") -> bytes:
    """ADR 0x30|TX# {TRANS LNG DATA}+ CRC-lo CRC-hi ETX SF, with SF escaping in data and CRC."""
    _check_addr(addr)
    if txn < 0 or txn > 0xF:
        raise FrameError("bad TX#", txn=txn)
    if not transactions:
        raise FrameError("data frame without transactions")
    body = bytearray((addr, DATA | txn))
    for trans, data in transactions:
        if trans < 0 or trans > 0xFF or len(data) > 0xFF:
            raise FrameError("bad transaction", trans=trans, length=len(data))
        body.append(trans)
        body.append(len(data))
        body.extend(data)
    crc = crc16(body)
    body.append(crc & 0xFF)
    body.append(crc >> 8)
    return bytes(body[:2]) + escape(bytes(body[2:])) + bytes((ETX, SF))


def encode_frame(frame: Frame) -> bytes:
    """Encode a Frame object (data or short)."""
    if frame.kind == DATA:
        return encode_data(frame.addr, frame.txn, frame.transactions)
    return encode_short(frame.addr, frame.kind, frame.txn)


def decode(raw: bytes) -> Frame:
    """Decode one complete frame as it appears on the wire (escaped, ending in SF).

    Raises FrameError for bad framing and CrcError for a checksum mismatch; never anything else.
    """
    raw = bytes(raw)
    if len(raw) < 3 or raw[-1] != SF:
        raise FrameError("frame too short or without stop flag", length=len(raw))
    addr = raw[0]
    ctrl = raw[1]
    _check_addr(addr)
    kind = ctrl & 0xF0
    txn = ctrl & 0x0F
    if kind not in _KINDS:
        raise FrameError("unknown control byte", ctrl=ctrl)
    if kind != DATA:
        if len(raw) != 3 or (kind == POLL and txn != 0):
            raise FrameError("bad short frame", ctrl=ctrl, length=len(raw))
        return Frame(addr, kind, txn)
    body = unescape(raw[2:-1])
    # body: {TRANS LNG DATA}+ CRC-lo CRC-hi ETX
    if len(body) < 5 or body[-1] != ETX:
        raise FrameError("data frame without ETX or too short", length=len(body))
    payload = body[:-3]
    got = body[-3] | (body[-2] << 8)
    want = crc16(bytes((addr, ctrl)) + payload)
    if got != want:
        raise CrcError("CRC mismatch", got=got, want=want)
    transactions = []
    i = 0
    n = len(payload)
    while i < n:
        if i + 2 > n:
            raise FrameError("truncated transaction header", offset=i)
        trans = payload[i]
        lng = payload[i + 1]
        if i + 2 + lng > n:
            raise FrameError("transaction longer than frame", trans=trans, length=lng)
        transactions.append((trans, bytes(payload[i + 2:i + 2 + lng])))
        i += 2 + lng
    return Frame(addr, DATA, txn, transactions)


def decode_resync(raw: bytes) -> Frame:
    """decode(), but when raw fails, retry from each later address byte: line noise that happened to look
    like an address must not cost the good frame behind it. Raises the first error when nothing decodes."""
    try:
        return decode(raw)
    except DartError as exc:
        first = exc
    for i in range(1, len(raw) - 2):
        if ADDR_FIRST <= raw[i] <= ADDR_LAST:
            try:
                return decode(raw[i:])
            except DartError:
                pass
    raise first


class FrameSplitter:
    """Streaming splitter: feed() raw line bytes, get back complete wire frames (each ending in SF).

    A frame ends at an SF not preceded by DLE (an escaped SF is data: the byte before a real stop flag is
    always ETX or a control byte). Leading bytes that cannot start a frame (not an address) are dropped,
    which resynchronises after line noise; frames are not validated here, decode() does that.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self.dropped = 0  # bytes thrown away while resynchronising

    def reset(self) -> None:
        self.dropped += len(self._buf)
        self._buf = bytearray()

    def feed(self, data: bytes) -> "list[bytes]":
        frames = []
        for b in data:
            if not self._buf and (b < ADDR_FIRST or b > ADDR_LAST):
                self.dropped += 1
                continue
            if b == SF and not (len(self._buf) > 1 and self._buf[-1] == DLE):
                self._buf.append(b)
                frames.append(bytes(self._buf))
                self._buf = bytearray()
                continue
            self._buf.append(b)
            if len(self._buf) > self._max:
                self.reset()
        return frames
