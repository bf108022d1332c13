"""The chip purse's purchase record (docs/chip-wallets.md): its byte layout, pure encode/decode, its MAC.

The card writes one record per debit, MACs it with its record key (contracts.purse_keys, Purpose.RECORD)
and the terminal journals it; the registry decodes it, checks the MAC with the same key derived from the
issuer's master, then the counter and the balances. Layout, big-endian, 44 bytes, then the 16-byte MAC:

    type 0x50 ("P") | format 0x01 | record key version | kind | card id (8) | wallet | counter (4) |
    amount (4) | unit | product (2) | terminal (8, its SAM id) | time (4, Unix seconds UTC) |
    previous balance (4) | new balance (4)

The card logs its loads in the same layout (kind LOAD, product 0, new = previous + amount), so the registry
reads one kind of record from a card's log.

Amounts and balances are whole minor units (cents) or centilitres, as the wallet's unit says; the product
is the 3-digit Conexxus code (docs/fleet.md). A record whose balances do not add up (previous - amount
!= new) is malformed: a card never signs one.

>>> record = PurchaseRecord(key_version=1, kind=Kind.PURCHASE, card_id=bytes.fromhex("7077000000000019"),
...     wallet=0, counter=8, amount=3318, unit=Unit.MONEY, product=19, terminal=bytes(8),
...     time=1_800_000_000, previous_balance=10000, new_balance=6682)
>>> raw = encode(record)
>>> len(raw), raw[:4].hex()
(44, '50010101')
>>> decode(raw) == record
True
>>> decode(raw[:-1])
Traceback (most recent call last):
    ...
contracts.purse_records.RecordError: a purchase record is 44 bytes (length=43 reason=length)
>>> key = bytes(16)
>>> open_signed(key, sign(key, record)) == record
True
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from contracts.errors import MessageError
from contracts.purse_keys import ID_LEN, MAC_LEN, MAX_VERSION, Unit, mac, verify_mac

__all__ = [
    "RECORD_FORMAT",
    "RECORD_LEN",
    "RECORD_TYPE",
    "SIGNED_LEN",
    "Kind",
    "PurchaseRecord",
    "RecordError",
    "decode",
    "encode",
    "open_signed",
    "sign",
]

RECORD_TYPE = 0x50
RECORD_FORMAT = 0x01
_RECORD = struct.Struct(">BBBB8sBIIBH8sIII")
RECORD_LEN = _RECORD.size
SIGNED_LEN = RECORD_LEN + MAC_LEN
WALLETS = 8
_U32 = 2**32 - 1


class RecordError(MessageError):
    """A purchase record is malformed or its MAC does not check; reason says which."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


class Kind(enum.IntEnum):
    """What the record says the card did."""

    PURCHASE = 1     # a debit reserved, dispensed and settled in one card session
    RECOVERED = 2    # a debit settled at a later insertion, after the card was pulled mid-purchase
    LOAD = 3         # a credit the issuer's load MAC allowed: new = previous + amount, product 0


@dataclass(frozen=True)
class PurchaseRecord:
    """One debit of one wallet, as the card signed it."""

    key_version: int
    kind: Kind
    card_id: bytes
    wallet: int
    counter: int
    amount: int
    unit: Unit
    product: int
    terminal: bytes
    time: int
    previous_balance: int
    new_balance: int

    def __post_init__(self) -> None:
        _check(self)


def _u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32:
        raise RecordError(f"{name} is 0..2**32-1", reason="range", field=name, value=value)


def _check(r: PurchaseRecord) -> None:
    if not 0 < r.key_version <= MAX_VERSION:
        raise RecordError("a key version is 1..255", reason="key_version", value=r.key_version)
    if len(r.card_id) != ID_LEN or len(r.terminal) != ID_LEN:
        raise RecordError("card and terminal ids are 8 bytes", reason="id")
    if not 0 <= r.wallet < WALLETS:
        raise RecordError("a wallet is 0..7", reason="wallet", value=r.wallet)
    if not 0 <= r.product <= 999:
        raise RecordError("a product is a 3-digit code", reason="product", value=r.product)
    for name in ("counter", "amount", "time", "previous_balance", "new_balance"):
        _u32(name, getattr(r, name))
    credit = r.kind is Kind.LOAD
    if credit and r.product:
        raise RecordError("a load names no product", reason="product", value=r.product)
    if (r.previous_balance + r.amount if credit else r.previous_balance - r.amount) != r.new_balance:
        raise RecordError("the balances do not add up", reason="balance", previous=r.previous_balance,
                          amount=r.amount, new=r.new_balance)


def encode(record: PurchaseRecord) -> bytes:
    """The record's 44 bytes, the input of its MAC."""
    r = record
    return _RECORD.pack(RECORD_TYPE, RECORD_FORMAT, r.key_version, int(r.kind), r.card_id, r.wallet,
                        r.counter, r.amount, int(r.unit), r.product, r.terminal, r.time,
                        r.previous_balance, r.new_balance)


def decode(raw: bytes) -> PurchaseRecord:
    """The record in raw; RecordError for anything a card would not have written."""
    if len(raw) != RECORD_LEN:
        raise RecordError(f"a purchase record is {RECORD_LEN} bytes", reason="length", length=len(raw))
    (rtype, fmt, key_version, kind, card_id, wallet, counter, amount, unit, product, terminal, time,
     previous, new) = _RECORD.unpack(raw)
    if rtype != RECORD_TYPE:
        raise RecordError("not a purchase record", reason="type", value=rtype)
    if fmt != RECORD_FORMAT:
        raise RecordError("unknown record format", reason="format", value=fmt)
    try:
        kind_v = Kind(kind)
    except ValueError:
        raise RecordError("unknown record kind", reason="kind", value=kind) from None
    try:
        unit_v = Unit(unit)
    except ValueError:
        raise RecordError("unknown unit", reason="unit", value=unit) from None
    return PurchaseRecord(key_version=key_version, kind=kind_v, card_id=card_id, wallet=wallet,
                          counter=counter, amount=amount, unit=unit_v, product=product, terminal=terminal,
                          time=time, previous_balance=previous, new_balance=new)


def sign(card_key: bytes, record: PurchaseRecord) -> bytes:
    """The record followed by its AES-CMAC under the card's record key: what the card returns."""
    raw = encode(record)
    return raw + mac(card_key, raw)


def open_signed(card_key: bytes, signed: bytes) -> PurchaseRecord:
    """The record in a signed record, after its MAC checked under the card's record key."""
    if len(signed) != SIGNED_LEN:
        raise RecordError(f"a signed record is {SIGNED_LEN} bytes", reason="length", length=len(signed))
    raw, tag = signed[:RECORD_LEN], signed[RECORD_LEN:]
    if not verify_mac(card_key, raw, tag):
        raise RecordError("the record's MAC does not check", reason="bad_mac")
    return decode(raw)
