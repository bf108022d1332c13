"""The chip purse's data records as they travel in APDUs (docs/chip-wallet-commands.md): pure, no I/O.

A wallet (READ RECORD SFI 1), the pending purchase slot (GET DATA DF03, and inside the SELECT answer) and
the purse's summary (PurseInfo, the SELECT answer). Big-endian; dates are whole numbers written as
YYYYMMDD (days) or YYYYMM (months), 0 meaning "none yet". A malformed record raises PurseDataError, whose
reason names the fault.

>>> w = Wallet(number=0, unit=Unit.VOLUME, balance=50000, products=((19, 19), (1, 9)), expiry=20281231,
...            day_limit=10000, month_limit=0)
>>> raw = w.encode()
>>> len(raw), Wallet.decode(raw) == w
(43, True)
>>> w.allows(19), w.allows(20)
(True, False)
>>> day_of(1_800_000_000), month_of(1_800_000_000)
(20270115, 202701)
"""

from __future__ import annotations

import datetime
import enum
import struct
from dataclasses import dataclass
from typing import Any

from contracts.errors import MessageError
from contracts.purse_keys import ID_LEN, MAC_LEN, Unit
from contracts.purse_records import SIGNED_LEN, PurchaseRecord, RecordError, open_signed
from contracts.purse_records import decode as decode_record
from contracts.purse_records import encode as encode_record

__all__ = [
    "INFO_FORMAT",
    "MAX_RANGES",
    "MAX_WALLETS",
    "PIN_TRIES",
    "PURSE_AID",
    "SALE_ID_LEN",
    "KeyVersions",
    "LogEntry",
    "PendingSlot",
    "PurseDataError",
    "PurseInfo",
    "Refusal",
    "Status",
    "Wallet",
    "day_of",
    "fci",
    "month_of",
    "parse_fci",
]

MAX_WALLETS = 8
MAX_RANGES = 16                   # product ranges per wallet
PIN_TRIES = 3
SALE_ID_LEN = 16
INFO_FORMAT = 0x01
PURSE_AID = bytes.fromhex("F0464F5245505552")     # F0 "FOREPUR" (first nibble F: ISO/IEC 7816-5 unregistered)
U32 = 2**32 - 1
# number, unit, balance, expiry, day limit, day used, day, month limit, month used, month, range count
_WALLET = struct.Struct(">BBIIIIIIIIB")
_RANGE = struct.Struct(">HH")
# counter, wallet, product, reserved amount, SAM id, time, sale id
_PENDING = struct.Struct(">IBHI8sI16s")
# format, purse id, status, counter, key versions (auth, record, load, admin), last time, PIN tries,
# wallet count, pending flag
_INFO = struct.Struct(">B8sBIBBBBIBBB")


class PurseDataError(MessageError):
    """Bytes that are not a purse record the card would write; reason says which field."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class Refusal(enum.IntEnum):
    """Why the card refused a command: each value is the status word it answers (9Xxx other than 9000 are
    proprietary in ISO/IEC 7816-4 5.1.3; the rest are interindustry)."""

    AUTH_FAILED = 0x6300        # a certificate, signature or issuer MAC did not check
    WRONG_PIN = 0x63C0          # the low nibble carries the tries left
    WRONG_LENGTH = 0x6700
    SECURITY = 0x6982           # no authenticated session, or the PIN is not verified
    PIN_BLOCKED = 0x6983
    CONDITIONS = 0x6985         # out of sequence
    SM_INCORRECT = 0x6988       # a secure-messaging MAC or counter did not check: the session ends
    WRONG_DATA = 0x6A80
    NOT_FOUND = 0x6A88
    PRODUCT = 0x9401            # the wallet does not allow this product
    EXPIRED = 0x9402
    BALANCE = 0x9403            # nothing left in the wallet
    DAY_LIMIT = 0x9404          # the day's limit is used up
    MONTH_LIMIT = 0x9405
    PENDING = 0x9406            # a purchase is pending: complete it first
    BLOCKED = 0x9407            # the purse is blocked
    COUNTER = 0x9408            # the transaction counter is exhausted
    TIME = 0x9409               # earlier than the last transaction
    NO_PENDING = 0x940A         # no pending purchase at this counter
    TOO_EARLY = 0x940B          # completion refused: another SAM, or within the grace time
    ABOVE_RESERVE = 0x940C      # a final amount above the reserve
    OVERFLOW = 0x940D           # a load would overflow the balance

    @classmethod
    def of(cls, sw: int) -> Refusal | None:
        """The refusal a status word stands for (63Cx as WRONG_PIN), None for 9000 or an unknown one."""
        if sw & 0xFFF0 == cls.WRONG_PIN:
            return cls.WRONG_PIN
        try:
            return cls(sw)
        except ValueError:
            return None


class Status(enum.IntEnum):
    """The purse's life-cycle status."""

    ACTIVE = 1
    BLOCKED = 2         # by an issuer script: no purchase, no load; reads and scripts still work


def day_of(time: int) -> int:
    """The UTC day of a Unix time as YYYYMMDD."""
    d = datetime.datetime.fromtimestamp(time, datetime.UTC)
    return d.year * 10000 + d.month * 100 + d.day


def month_of(time: int) -> int:
    """The UTC month of a Unix time as YYYYMM."""
    d = datetime.datetime.fromtimestamp(time, datetime.UTC)
    return d.year * 100 + d.month


def _u32(name: str, value: int) -> None:
    if not 0 <= value <= U32:
        raise PurseDataError(f"{name} is 0..2**32-1", reason="range", field=name, value=value)


def _date(name: str, value: int, *, allow_zero: bool = True) -> None:
    if value == 0 and allow_zero:
        return
    try:
        datetime.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        raise PurseDataError(f"{name} is a date YYYYMMDD", reason="date", field=name, value=value) from None


def _month(name: str, value: int) -> None:
    if value and not (1 <= value % 100 <= 12 and value // 100 >= 1):
        raise PurseDataError(f"{name} is a month YYYYMM", reason="date", field=name, value=value)


def _unit(value: int) -> Unit:
    try:
        return Unit(value)
    except ValueError:
        raise PurseDataError("unknown unit", reason="unit", value=value) from None


@dataclass(frozen=True)
class Wallet:
    """One wallet on the card. Limits of 0 are "no limit"; products are inclusive ranges of 3-digit codes
    (a single code is a range of one), and a wallet with no range allows nothing."""

    number: int
    unit: Unit
    balance: int
    products: tuple[tuple[int, int], ...]
    expiry: int                       # last valid day, YYYYMMDD
    day_limit: int = 0
    day_used: int = 0
    day: int = 0                      # the day day_used belongs to, YYYYMMDD
    month_limit: int = 0
    month_used: int = 0
    month: int = 0                    # the month month_used belongs to, YYYYMM

    def __post_init__(self) -> None:
        if not 0 <= self.number < MAX_WALLETS:
            raise PurseDataError("a wallet is 0..7", reason="wallet", value=self.number)
        for name in ("balance", "day_limit", "day_used", "month_limit", "month_used"):
            _u32(name, getattr(self, name))
        _date("expiry", self.expiry, allow_zero=False)
        _date("day", self.day)
        _month("month", self.month)
        if len(self.products) > MAX_RANGES:
            raise PurseDataError("at most 16 product ranges", reason="products", count=len(self.products))
        for low, high in self.products:
            if not 0 <= low <= high <= 999:
                raise PurseDataError("a product range is low..high within 0..999", reason="products",
                                     low=low, high=high)

    def allows(self, product: int) -> bool:
        return any(low <= product <= high for low, high in self.products)

    def encode(self) -> bytes:
        head = _WALLET.pack(self.number, int(self.unit), self.balance, self.expiry, self.day_limit,
                            self.day_used, self.day, self.month_limit, self.month_used, self.month,
                            len(self.products))
        return head + b"".join(_RANGE.pack(low, high) for low, high in self.products)

    @classmethod
    def decode(cls, raw: bytes) -> Wallet:
        if len(raw) < _WALLET.size:
            raise PurseDataError("a wallet record is too short", reason="length", length=len(raw))
        (number, unit, balance, expiry, day_limit, day_used, day, month_limit, month_used, month,
         count) = _WALLET.unpack_from(raw)
        if len(raw) != _WALLET.size + count * _RANGE.size:
            raise PurseDataError("a wallet record's length does not match its ranges", reason="length",
                                 length=len(raw), ranges=count)
        products = tuple(_RANGE.unpack_from(raw, _WALLET.size + i * _RANGE.size) for i in range(count))
        return cls(number=number, unit=_unit(unit), balance=balance, products=products, expiry=expiry,
                   day_limit=day_limit, day_used=day_used, day=day, month_limit=month_limit,
                   month_used=month_used, month=month)


@dataclass(frozen=True)
class PendingSlot:
    """The one open purchase: reserved at `counter`, not yet settled."""

    counter: int
    wallet: int
    product: int
    reserved: int
    sam_id: bytes
    time: int
    sale_id: bytes

    LEN = _PENDING.size

    def __post_init__(self) -> None:
        for name in ("counter", "reserved", "time"):
            _u32(name, getattr(self, name))
        if not 0 <= self.wallet < MAX_WALLETS:
            raise PurseDataError("a wallet is 0..7", reason="wallet", value=self.wallet)
        if not 0 <= self.product <= 999:
            raise PurseDataError("a product is a 3-digit code", reason="product", value=self.product)
        if len(self.sam_id) != ID_LEN or len(self.sale_id) != SALE_ID_LEN:
            raise PurseDataError("a SAM id is 8 bytes, a sale id 16", reason="id")

    def encode(self) -> bytes:
        return _PENDING.pack(self.counter, self.wallet, self.product, self.reserved, self.sam_id, self.time,
                             self.sale_id)

    @classmethod
    def decode(cls, raw: bytes) -> PendingSlot:
        if len(raw) != _PENDING.size:
            raise PurseDataError(f"a pending slot is {_PENDING.size} bytes", reason="length",
                                 length=len(raw))
        counter, wallet, product, reserved, sam_id, time, sale_id = _PENDING.unpack(raw)
        return cls(counter=counter, wallet=wallet, product=product, reserved=reserved, sam_id=sam_id,
                   time=time, sale_id=sale_id)


@dataclass(frozen=True)
class KeyVersions:
    """The versions of the card's keys in use (the newest of each purpose the card holds)."""

    auth: int
    record: int
    load: int
    admin: int


@dataclass(frozen=True)
class PurseInfo:
    """What SELECT tells about the purse: enough for the terminal to decide what to do next."""

    purse_id: bytes
    status: Status
    counter: int                      # the last transaction's counter, 0 before the first
    keys: KeyVersions
    last_time: int                    # Unix seconds of the last transaction, 0 before the first
    pin_tries: int
    wallet_count: int
    pending: PendingSlot | None

    def __post_init__(self) -> None:
        if len(self.purse_id) != ID_LEN:
            raise PurseDataError("a purse id is 8 bytes", reason="id")
        _u32("counter", self.counter)
        _u32("last_time", self.last_time)
        if not 0 <= self.pin_tries <= PIN_TRIES or not 0 <= self.wallet_count <= MAX_WALLETS:
            raise PurseDataError("PIN tries 0..3, wallets 0..8", reason="range")
        for version in (self.keys.auth, self.keys.record, self.keys.load, self.keys.admin):
            if not 0 < version <= 255:
                raise PurseDataError("a key version is 1..255", reason="range", value=version)

    def encode(self) -> bytes:
        k = self.keys
        head = _INFO.pack(INFO_FORMAT, self.purse_id, int(self.status), self.counter, k.auth, k.record,
                          k.load, k.admin, self.last_time, self.pin_tries, self.wallet_count,
                          0 if self.pending is None else 1)
        return head + (b"" if self.pending is None else self.pending.encode())

    @classmethod
    def decode(cls, raw: bytes) -> PurseInfo:
        if len(raw) < _INFO.size:
            raise PurseDataError("purse info is too short", reason="length", length=len(raw))
        (fmt, purse_id, status, counter, auth, record, load, admin, last_time, tries, count,
         has_pending) = _INFO.unpack_from(raw)
        if fmt != INFO_FORMAT:
            raise PurseDataError("unknown purse info format", reason="format", value=fmt)
        if has_pending not in (0, 1) or len(raw) != _INFO.size + has_pending * _PENDING.size:
            raise PurseDataError("purse info's pending part is malformed", reason="length",
                                 length=len(raw))
        try:
            status_v = Status(status)
        except ValueError:
            raise PurseDataError("unknown purse status", reason="status", value=status) from None
        pending = PendingSlot.decode(raw[_INFO.size:]) if has_pending else None
        return cls(purse_id=purse_id, status=status_v, counter=counter,
                   keys=KeyVersions(auth, record, load, admin), last_time=last_time, pin_tries=tries,
                   wallet_count=count, pending=pending)


def _check(condition: bool, message: str, reason: str) -> None:
    if not condition:
        raise PurseDataError(message, reason=reason)


def _tlv(tag: bytes, value: bytes) -> bytes:
    if len(value) > 255:
        raise PurseDataError("a TLV value is at most 255 bytes here", reason="length")
    return tag + (bytes([len(value)]) if len(value) < 0x80 else bytes([0x81, len(value)])) + value


def _read_tlv(raw: bytes, tag: bytes) -> tuple[bytes, bytes]:
    """The value of the TLV at the start of raw, and what follows it."""
    _check(raw[:len(tag)] == tag, f"expected tag {tag.hex()}", "tag")
    rest = raw[len(tag):]
    _check(len(rest) >= 1, "a TLV without a length", "length")
    size, skip = rest[0], 1
    if size == 0x81:
        _check(len(rest) >= 2, "a TLV without a length", "length")
        size, skip = rest[1], 2
    elif size > 0x7F:
        raise PurseDataError("unsupported TLV length", reason="length")
    _check(len(rest) >= skip + size, "a TLV longer than its data", "length")
    return rest[skip:skip + size], rest[skip + size:]


def fci(info: PurseInfo) -> bytes:
    """The SELECT answer: FCI template 6F with the AID (84) and, in A5, the purse info (53)."""
    return _tlv(b"\x6f", _tlv(b"\x84", PURSE_AID) + _tlv(b"\xa5", _tlv(b"\x53", info.encode())))


def parse_fci(data: bytes) -> PurseInfo:
    template, rest = _read_tlv(data, b"\x6f")
    _check(not rest, "bytes after the FCI", "length")
    aid, rest = _read_tlv(template, b"\x84")
    _check(aid == PURSE_AID, "not the purse application", "aid")
    proprietary, rest = _read_tlv(rest, b"\xa5")
    _check(not rest, "bytes after the FCI proprietary template", "length")
    info, rest = _read_tlv(proprietary, b"\x53")
    _check(not rest, "bytes after the purse info", "length")
    return PurseInfo.decode(info)




@dataclass(frozen=True)
class LogEntry:
    """One signed record from the card's log (a purchase, a recovered purchase or a load)."""

    record: PurchaseRecord
    mac: bytes

    @property
    def signed(self) -> bytes:
        return encode_record(self.record) + self.mac

    @classmethod
    def decode(cls, raw: bytes) -> LogEntry:
        """The record of a signed record, not checking its MAC (only the issuer holds the key)."""
        _check(len(raw) == SIGNED_LEN, "a signed record is 60 bytes", "length")
        try:
            record = decode_record(raw[:-MAC_LEN])
        except RecordError as exc:
            raise PurseDataError("a malformed record", reason="record", fault=exc.reason) from None
        return cls(record=record, mac=bytes(raw[-MAC_LEN:]))

    def verified(self, record_key: bytes) -> PurchaseRecord:
        """The record after its MAC checked under the card's RECORD key (the issuer's side)."""
        return open_signed(record_key, self.signed)
