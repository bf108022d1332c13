"""The chip purse's commands and answers (docs/chip-wallet-commands.md): pure builders and parsers, no I/O.

The terminal builds each command with the functions below and, for the secure-messaging class (CLA 84),
hands (CLA, INS, P1, P2, data) to contracts.purse_session.wrap_command (or its SAM) instead of sending
Command.to_bytes(); the card parses the data fields with the request classes' decode. Every decode raises
PurseDataError (a MessageError) with a reason for bytes a genuine peer would not send.

>>> c = reserve(ReserveRequest(wallet=0, product=19, max_amount=6000, time=1_800_000_000,
...                            sale_id=bytes(16)))
>>> (c.cla, c.ins, len(c.data)), c.secure
((132, 48, 27), True)
>>> ReserveRequest.decode(c.data).max_amount
6000
>>> select().to_bytes().hex()
'00a4040008f0464f524550555200'
>>> split_response(bytes.fromhex("9403"))
(b'', 37891)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from contracts.purse_keys import MAC_LEN, Unit
from contracts.purse_wallets import PURSE_AID, SALE_ID_LEN, LogEntry, PurseDataError, Refusal, fci, parse_fci

__all__ = [
    "CLA_PLAIN", "CLA_PROPRIETARY", "CLA_SECURE", "COMPLETE_FINAL", "COMPLETE_GRACE", "INS_APPLY_SCRIPT",
    "INS_COMPLETE_PENDING", "INS_GET_DATA", "INS_INITIALIZE_LOAD", "INS_LOAD", "INS_MUTUAL_AUTH",
    "INS_READ_RECORD", "INS_RESERVE", "INS_SELECT", "INS_SETTLE", "INS_VERIFY", "LOG_SIZE", "PURSE_AID",
    "SFI_LOG", "SFI_WALLETS", "SW_BLOCKED", "SW_OK", "TAG_COUNTER", "TAG_LAST_TIME", "TAG_PENDING",
    "TAG_PIN_TRIES", "VERIFY_P2_ENCIPHERED", "Command", "CompleteRequest", "InitLoadAnswer",
    "InitLoadRequest", "LoadRequest", "LogEntry", "Refusal", "ReserveAnswer", "ReserveRequest",
    "ScriptRequest", "SettleRequest", "apply_script", "complete_pending", "fci", "get_data",
    "initialize_load", "load", "mutual_authenticate", "parse_fci", "read_log", "read_wallet", "reserve",
    "select", "settle", "split_response", "verify",
]

CLA_PLAIN = 0x00
CLA_PROPRIETARY = 0x80
CLA_SECURE = 0x84                                 # proprietary class with secure messaging (ISO/IEC 7816-4)
INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2
INS_GET_DATA = 0xCA
INS_VERIFY = 0x20
INS_MUTUAL_AUTH = 0x82
# Proprietary INS codes: none is an interindustry INS of ISO/IEC 7816-4.
INS_RESERVE = 0x30
INS_SETTLE = 0x32
INS_COMPLETE_PENDING = 0x34
INS_INITIALIZE_LOAD = 0x36
INS_LOAD = 0x38
INS_APPLY_SCRIPT = 0x3A
VERIFY_P2_ENCIPHERED = 0x88                       # as EMV Book 3 numbers an enciphered PIN
COMPLETE_FINAL = 0x01                             # COMPLETE PENDING P1: the final amount, same SAM
COMPLETE_GRACE = 0x02                             # COMPLETE PENDING P1: the full reserve, after grace
SFI_WALLETS = 1
SFI_LOG = 2
LOG_SIZE = 10
TAG_COUNTER = 0xDF01
TAG_LAST_TIME = 0xDF02
TAG_PENDING = 0xDF03
TAG_PIN_TRIES = 0x9F17                            # the PIN try counter, as EMV tags it
SW_OK = 0x9000
SW_BLOCKED = 0x6283                               # SELECT of a blocked purse: the answer follows anyway

_RESERVE = struct.Struct(">BHII16s")
_U32_PAIR = struct.Struct(">II")
_INIT_LOAD = struct.Struct(">BI")
_INIT_LOAD_ANSWER = struct.Struct(">BIBI16s")
_LOAD = struct.Struct(">BBI16s16s")
_U32 = 2**32 - 1
_ADMIN_HEAD = 17                  # contracts.purse_keys.admin_message's header


@dataclass(frozen=True)
class Command:
    """One command APDU. `secure` ones go to the card only wrapped (contracts.purse_session)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: bool = True             # expects an answer (Le 00)

    @property
    def secure(self) -> bool:
        return self.cla == CLA_SECURE

    def to_bytes(self) -> bytes:
        """The short APDU in the clear (ISO/IEC 7816-3 cases 1-4)."""
        if len(self.data) > 255:
            raise PurseDataError("a short APDU carries at most 255 bytes", reason="length",
                                 length=len(self.data))
        body = bytes([len(self.data)]) + self.data if self.data else b""
        return bytes([self.cla, self.ins, self.p1, self.p2]) + body + (b"\x00" if self.le else b"")


def split_response(rapdu: bytes) -> tuple[bytes, int]:
    """(data, status word) of a response APDU in the clear."""
    if len(rapdu) < 2:
        raise PurseDataError("a response is at least its status word", reason="length", length=len(rapdu))
    return bytes(rapdu[:-2]), int.from_bytes(rapdu[-2:], "big")


def _length(raw: bytes, size: int, what: str) -> None:
    if len(raw) != size:
        raise PurseDataError(f"{what} is {size} bytes", reason="length", length=len(raw))


def _check(condition: bool, message: str, reason: str = "range") -> None:
    if not condition:
        raise PurseDataError(message, reason=reason)


# -- SELECT, READ RECORD, GET DATA (CLA 00) -----------------------------------------------------------------


def select() -> Command:
    return Command(CLA_PLAIN, INS_SELECT, 0x04, 0x00, PURSE_AID)


def read_wallet(number: int) -> Command:
    """READ RECORD of wallet `number` (0..7): SFI 1, record number + 1."""
    _check(0 <= number < 8, "a wallet is 0..7")
    return Command(CLA_PLAIN, INS_READ_RECORD, number + 1, (SFI_WALLETS << 3) | 0x04)


def read_log(index: int) -> Command:
    """READ RECORD of the log: SFI 2, record 1 the newest, up to 10."""
    _check(0 < index <= LOG_SIZE, "a log record is 1..10")
    return Command(CLA_PLAIN, INS_READ_RECORD, index, (SFI_LOG << 3) | 0x04)


def get_data(tag: int) -> Command:
    _check(tag in (TAG_COUNTER, TAG_LAST_TIME, TAG_PENDING, TAG_PIN_TRIES), "unknown GET DATA tag", "tag")
    return Command(CLA_PLAIN, INS_GET_DATA, tag >> 8, tag & 0xFF)


# -- MUTUAL AUTHENTICATE (CLA 80) and VERIFY (CLA 84) -------------------------------------------------------


def mutual_authenticate(step: int, data: bytes) -> Command:
    """Step 1 carries the SAM's hello (the card answers its own half), step 2 the SAM's proof (the card
    answers its key confirmation); the message bytes are contracts.purse_session's."""
    _check(step in (1, 2), "MUTUAL AUTHENTICATE has steps 1 and 2")
    return Command(CLA_PROPRIETARY, INS_MUTUAL_AUTH, step, 0x00, data)


def verify(enciphered_pin: bytes) -> Command:
    _length(enciphered_pin, 16, "an enciphered PIN block")
    return Command(CLA_SECURE, INS_VERIFY, 0x00, VERIFY_P2_ENCIPHERED, enciphered_pin, le=False)


# -- purchase ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReserveRequest:
    wallet: int
    product: int
    max_amount: int
    time: int                  # the terminal's clock, Unix seconds UTC
    sale_id: bytes

    def __post_init__(self) -> None:
        _check(0 <= self.wallet < 8 and 0 <= self.product <= 999, "wallet 0..7, product 0..999")
        _check(0 < self.max_amount <= _U32 and 0 <= self.time <= _U32, "amount 1..2**32-1, time 32 bits")
        _check(len(self.sale_id) == SALE_ID_LEN, "a sale id is 16 bytes", "length")

    def encode(self) -> bytes:
        return _RESERVE.pack(self.wallet, self.product, self.max_amount, self.time, self.sale_id)

    @classmethod
    def decode(cls, data: bytes) -> ReserveRequest:
        _length(data, _RESERVE.size, "a RESERVE request")
        wallet, product, amount, time, sale_id = _RESERVE.unpack(data)
        return cls(wallet=wallet, product=product, max_amount=amount, time=time, sale_id=sale_id)


@dataclass(frozen=True)
class ReserveAnswer:
    reserved: int
    counter: int               # the pending purchase's counter: SETTLE names it

    def encode(self) -> bytes:
        return _U32_PAIR.pack(self.reserved, self.counter)

    @classmethod
    def decode(cls, data: bytes) -> ReserveAnswer:
        _length(data, _U32_PAIR.size, "a RESERVE answer")
        reserved, counter = _U32_PAIR.unpack(data)
        return cls(reserved=reserved, counter=counter)


def reserve(request: ReserveRequest) -> Command:
    return Command(CLA_SECURE, INS_RESERVE, 0x00, 0x00, request.encode())


@dataclass(frozen=True)
class SettleRequest:
    counter: int
    final_amount: int

    def __post_init__(self) -> None:
        _check(0 <= self.counter <= _U32 and 0 <= self.final_amount <= _U32, "32-bit counter and amount")

    def encode(self) -> bytes:
        return _U32_PAIR.pack(self.counter, self.final_amount)

    @classmethod
    def decode(cls, data: bytes) -> SettleRequest:
        _length(data, _U32_PAIR.size, "a SETTLE request")
        counter, final = _U32_PAIR.unpack(data)
        return cls(counter=counter, final_amount=final)


def settle(request: SettleRequest) -> Command:
    """SETTLE; the card answers the signed 60-byte record (LogEntry.decode)."""
    return Command(CLA_SECURE, INS_SETTLE, 0x00, 0x00, request.encode())


@dataclass(frozen=True)
class CompleteRequest:
    """COMPLETE PENDING: with final_amount (P1 01) at the reserving SAM; without (P1 02) the full reserve
    once the grace time has passed."""

    counter: int
    final_amount: int | None

    def __post_init__(self) -> None:
        _check(0 <= self.counter <= _U32, "a 32-bit counter")
        _check(self.final_amount is None or 0 <= self.final_amount <= _U32, "a 32-bit amount")

    @property
    def p1(self) -> int:
        return COMPLETE_GRACE if self.final_amount is None else COMPLETE_FINAL

    def encode(self) -> bytes:
        if self.final_amount is None:
            return self.counter.to_bytes(4, "big")
        return _U32_PAIR.pack(self.counter, self.final_amount)

    @classmethod
    def decode(cls, p1: int, data: bytes) -> CompleteRequest:
        if p1 == COMPLETE_GRACE:
            _length(data, 4, "a COMPLETE PENDING (grace) request")
            return cls(counter=int.from_bytes(data, "big"), final_amount=None)
        _check(p1 == COMPLETE_FINAL, "COMPLETE PENDING P1 is 01 or 02", "p1")
        _length(data, 8, "a COMPLETE PENDING (final) request")
        counter, final = _U32_PAIR.unpack(data)
        return cls(counter=counter, final_amount=final)


def complete_pending(request: CompleteRequest) -> Command:
    return Command(CLA_SECURE, INS_COMPLETE_PENDING, request.p1, 0x00, request.encode())


# -- load and scripts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitLoadRequest:
    wallet: int
    amount: int

    def __post_init__(self) -> None:
        _check(0 <= self.wallet < 8 and 0 < self.amount <= _U32, "wallet 0..7, amount 1..2**32-1")

    def encode(self) -> bytes:
        return _INIT_LOAD.pack(self.wallet, self.amount)

    @classmethod
    def decode(cls, data: bytes) -> InitLoadRequest:
        _length(data, _INIT_LOAD.size, "an INITIALIZE LOAD request")
        wallet, amount = _INIT_LOAD.unpack(data)
        return cls(wallet=wallet, amount=amount)


@dataclass(frozen=True)
class InitLoadAnswer:
    """The card's answer: what contracts.purse_keys.init_load_message needs besides the request, and the
    card's MAC over it under its AUTH key."""

    key_version: int
    counter: int
    unit: Unit
    balance: int
    mac: bytes

    def encode(self) -> bytes:
        return _INIT_LOAD_ANSWER.pack(self.key_version, self.counter, int(self.unit), self.balance, self.mac)

    @classmethod
    def decode(cls, data: bytes) -> InitLoadAnswer:
        _length(data, _INIT_LOAD_ANSWER.size, "an INITIALIZE LOAD answer")
        version, counter, unit, balance, tag = _INIT_LOAD_ANSWER.unpack(data)
        try:
            unit_v = Unit(unit)
        except ValueError:
            raise PurseDataError("unknown unit", reason="unit", value=unit) from None
        return cls(key_version=version, counter=counter, unit=unit_v, balance=balance, mac=tag)


def initialize_load(request: InitLoadRequest) -> Command:
    return Command(CLA_SECURE, INS_INITIALIZE_LOAD, 0x00, 0x00, request.encode())


@dataclass(frozen=True)
class LoadRequest:
    """LOAD: the issuer's load MAC (contracts.purse_keys.load_message, LOAD key) and the fields it covers
    that the card does not know itself (its id, counter and the wallet's unit it does)."""

    key_version: int
    wallet: int
    amount: int
    load_id: bytes
    mac: bytes

    def __post_init__(self) -> None:
        _check(0 < self.key_version <= 255 and 0 <= self.wallet < 8, "key version 1..255, wallet 0..7")
        _check(0 < self.amount <= _U32, "amount 1..2**32-1")
        _check(len(self.load_id) == 16 and len(self.mac) == MAC_LEN, "load id and MAC are 16 bytes",
               "length")

    def encode(self) -> bytes:
        return _LOAD.pack(self.key_version, self.wallet, self.amount, self.load_id, self.mac)

    @classmethod
    def decode(cls, data: bytes) -> LoadRequest:
        _length(data, _LOAD.size, "a LOAD request")
        version, wallet, amount, load_id, tag = _LOAD.unpack(data)
        return cls(key_version=version, wallet=wallet, amount=amount, load_id=load_id, mac=tag)


def load(request: LoadRequest) -> Command:
    """LOAD; the card answers the signed load record (LogEntry.decode)."""
    return Command(CLA_SECURE, INS_LOAD, 0x00, 0x00, request.encode())


@dataclass(frozen=True)
class ScriptRequest:
    """APPLY SCRIPT: the issuer's admin message (contracts.purse_keys.admin_message) and its MAC under the
    card's ADMIN key."""

    message: bytes
    mac: bytes

    def __post_init__(self) -> None:
        _check(_ADMIN_HEAD <= len(self.message) <= _ADMIN_HEAD + 64 and len(self.mac) == MAC_LEN,
               "an admin message is 17..81 bytes, its MAC 16", "length")

    def encode(self) -> bytes:
        return self.message + self.mac

    @classmethod
    def decode(cls, data: bytes) -> ScriptRequest:
        _check(len(data) >= _ADMIN_HEAD + MAC_LEN, "an APPLY SCRIPT request is too short", "length")
        return cls(message=bytes(data[:-MAC_LEN]), mac=bytes(data[-MAC_LEN:]))


def apply_script(request: ScriptRequest) -> Command:
    """APPLY SCRIPT; for COMPLETE_PENDING the card answers the signed record, otherwise nothing."""
    return Command(CLA_SECURE, INS_APPLY_SCRIPT, 0x00, 0x00, request.encode())

