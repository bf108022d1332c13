"""Keys and MACs of the chip purse (docs/chip-wallets.md): pure functions, no I/O.

Every symmetric key of a card or a SAM is diversified from an issuer master key with the KDF in counter
mode of NIST SP 800-108 (section 4.1 of Rev. 1), its PRF AES-CMAC (NIST SP 800-38B, RFC 4493): a 32-bit
counter before the fixed input, which is label || 0x00 || context || [L] as 32 bits. The label names the
scheme and the purpose (so a key made for loads is never the key for records); the context is the card's
or the SAM's 8-byte id and the key version, so each card, purpose and version gets a key of its own and
one card's key tells nothing about another's. The derived key has the master's length (AES-128 or -256).

A MAC is AES-CMAC, full 16 bytes, over a fixed byte layout that starts with a one-byte message type and
a format version (load_message, and the purchase record of contracts.purse_records); verify_mac compares
in constant time and answers a bool.

>>> master = bytes(range(16))
>>> card = bytes.fromhex("7077000000000019")
>>> k1 = derive_card_key(master, card, Purpose.RECORD, version=1)
>>> k2 = derive_card_key(master, card, Purpose.RECORD, version=2)
>>> len(k1), k1 != k2, k1 != derive_card_key(master, card, Purpose.LOAD, version=1)
(16, True, True)
>>> message = load_message(card, key_version=1, wallet=0, counter=7, amount=5000, unit=Unit.MONEY,
...                        load_id=bytes(16))
>>> len(message), message[:3].hex()
(37, '4c0101')
>>> tag = mac(derive_card_key(master, card, Purpose.LOAD, version=1), message)
>>> verify_mac(derive_card_key(master, card, Purpose.LOAD, version=1), message, tag)
True
>>> verify_mac(derive_card_key(master, card, Purpose.LOAD, version=1), message[:-1] + b"\\x01", tag)
False
"""

from __future__ import annotations

import enum
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from contracts.errors import ConfigError, MessageError

__all__ = [
    "ADMIN_TYPE",
    "ID_LEN",
    "INIT_LOAD_TYPE",
    "LOAD_FORMAT",
    "LOAD_LEN",
    "LOAD_TYPE",
    "MAC_LEN",
    "MAX_VERSION",
    "AdminOp",
    "Purpose",
    "PurseKeyError",
    "Unit",
    "admin_message",
    "derive_card_key",
    "derive_sam_key",
    "init_load_message",
    "kdf_counter_cmac",
    "load_message",
    "mac",
    "verify_mac",
]

MAC_LEN = 16                      # AES-CMAC, not truncated (SP 800-38B allows shorter; we keep all 128 bits)
ID_LEN = 8                        # a card's purse id and a SAM's id: 8 bytes, never the card number
MAX_VERSION = 255                 # a key version is one byte, on the card and in every record
LABEL_PREFIX = b"forecourt purse v1 "
KEY_LENGTHS = (16, 32)            # AES-128 or AES-256 master keys
LOAD_TYPE = 0x4C                  # "L": the first byte of a load message
LOAD_FORMAT = 0x01
# Load message: type, format, load key version, card id, wallet, card counter, amount, unit, load id (the
# registry's idempotency key for the top-up); big-endian, 37 bytes.
_LOAD = struct.Struct(">BBB8sBIIB16s")
LOAD_LEN = _LOAD.size
INIT_LOAD_TYPE = 0x49             # "I": the card's request for a load, MACed under its AUTH key
# type, format, auth key version, card id, wallet, counter, amount asked, unit, balance now; 29 bytes
_INIT_LOAD = struct.Struct(">BBB8sBIIBI")
ADMIN_TYPE = 0x41                 # "A": an issuer script, MACed under the card's ADMIN key
# type, format, admin key version, card id, counter, operation, payload length, then the payload
_ADMIN = struct.Struct(">BBB8sIBB")
_U32 = 2**32 - 1


class PurseKeyError(ConfigError):
    """A key, id or field given to the purse key functions has the wrong size or range."""


class Purpose(enum.Enum):
    """What a diversified key is for; its value is the KDF label's last word."""

    AUTH = b"auth"        # the card proving itself to the issuer online (load, unblock): card and issuer only
    RECORD = b"record"    # the card's MAC over each purchase record: card and issuer only
    LOAD = b"load"        # the issuer's MAC over a load, checked by the card: card and issuer only
    ADMIN = b"admin"      # issuer scripts: block the card, reset PIN tries, change limits
    SAM = b"sam"          # a SAM's own MAC over the records it saw: that SAM and the issuer only


class AdminOp(enum.IntEnum):
    """What an issuer script orders the card to do (payloads: docs/chip-wallets.md)."""

    BLOCK = 1               # no payload: the purse refuses every purchase and load
    UNBLOCK = 2             # no payload
    RESET_PIN_TRIES = 3     # no payload: the PIN's tries back to their maximum
    SET_LIMITS = 4          # wallet (1), per-day limit (4), per-month limit (4); 0 is no limit
    COMPLETE_PENDING = 5    # pending counter (4), final amount (4), reserving SAM id (8): settle a reserve


class Unit(enum.IntEnum):
    """What a wallet counts: money in minor units or volume in centilitres."""

    MONEY = 1
    VOLUME = 2


def _check_key(master: bytes) -> None:
    if len(master) not in KEY_LENGTHS:
        raise PurseKeyError("a master key is 16 or 32 bytes", length=len(master))


def _check_id(ident: bytes, what: str) -> None:
    if len(ident) != ID_LEN:
        raise PurseKeyError(f"a {what} id is {ID_LEN} bytes", length=len(ident))


def _check_version(version: int) -> None:
    if not 0 < version <= MAX_VERSION:
        raise PurseKeyError("a key version is 1..255", version=version)


def kdf_counter_cmac(key: bytes, fixed: bytes, length: int, *, counter_bytes: int = 4) -> bytes:
    """NIST SP 800-108 KDF in counter mode with AES-CMAC, counter before the given fixed input.

    The general form, for published vectors; derive_card_key and derive_sam_key build the fixed input.

    >>> kdf_counter_cmac(bytes(16), b"", 16, counter_bytes=1) == mac(bytes(16), b"\\x01")
    True
    """
    if len(key) not in KEY_LENGTHS:
        raise PurseKeyError("a KDF key is 16 or 32 bytes", length=len(key))
    kdf = KBKDFCMAC(algorithm=algorithms.AES, mode=Mode.CounterMode, length=length, rlen=counter_bytes,
                    llen=None, location=CounterLocation.BeforeFixed, label=None, context=None,
                    fixed=fixed)
    return kdf.derive(key)


def _derive(master: bytes, purpose: Purpose, ident: bytes, version: int) -> bytes:
    _check_key(master)
    _check_version(version)
    length = len(master)
    fixed = (LABEL_PREFIX + purpose.value + b"\x00" + ident + bytes([version])
             + struct.pack(">I", 8 * length))
    return kdf_counter_cmac(master, fixed, length)


def derive_card_key(master: bytes, card_id: bytes, purpose: Purpose, *, version: int) -> bytes:
    """The card's own key for one purpose and key version, from the issuer master key of that purpose."""
    _check_id(card_id, "card")
    if purpose is Purpose.SAM:
        raise PurseKeyError("a SAM key is derived with derive_sam_key")
    return _derive(master, purpose, card_id, version)


def derive_sam_key(master: bytes, sam_id: bytes, *, version: int) -> bytes:
    """A SAM's own MAC key (per terminal), from the issuer's SAM master key; provisioning loads it."""
    _check_id(sam_id, "SAM")
    return _derive(master, Purpose.SAM, sam_id, version)


def mac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (RFC 4493) of message under key, 16 bytes."""
    if len(key) not in KEY_LENGTHS:
        raise PurseKeyError("a MAC key is 16 or 32 bytes", length=len(key))
    c = cmac.CMAC(algorithms.AES(key))
    c.update(message)
    return c.finalize()


def verify_mac(key: bytes, message: bytes, tag: bytes) -> bool:
    """Whether tag is the AES-CMAC of message under key; the comparison takes constant time."""
    if len(key) not in KEY_LENGTHS:
        raise PurseKeyError("a MAC key is 16 or 32 bytes", length=len(key))
    if len(tag) != MAC_LEN:
        return False
    c = cmac.CMAC(algorithms.AES(key))
    c.update(message)
    try:
        c.verify(tag)
    except InvalidSignature:
        return False
    return True


def load_message(card_id: bytes, *, key_version: int, wallet: int, counter: int, amount: int, unit: Unit,
                 load_id: bytes) -> bytes:
    """The bytes the issuer MACs for a load and the card checks before it credits the wallet.

    key_version names the card's load key the MAC is made with (the card keeps its versions in use);
    counter is the card's transaction counter the load is for (the card refuses any other, so a load
    MAC is good once); load_id is the registry's 16-byte idempotency key of the top-up.
    """
    _check_id(card_id, "card")
    _check_version(key_version)
    _check_fields(wallet, counter)
    if not 0 < amount <= _U32:
        raise MessageError("a load amount is 1..2**32-1", amount=amount)
    if len(load_id) != 16:
        raise MessageError("a load id is 16 bytes", length=len(load_id))
    return _LOAD.pack(LOAD_TYPE, LOAD_FORMAT, key_version, card_id, wallet, counter, amount, int(unit),
                      load_id)


def _check_fields(wallet: int, counter: int) -> None:
    if not 0 <= wallet < 8:
        raise MessageError("a wallet is 0..7", wallet=wallet)
    if not 0 <= counter <= _U32:
        raise MessageError("a counter is 0..2**32-1", counter=counter)


def init_load_message(card_id: bytes, *, key_version: int, wallet: int, counter: int, amount: int,
                      unit: Unit, balance: int) -> bytes:
    """What the card MACs under its AUTH key when asked for a load: the issuer learns that the genuine
    card, at this counter and with this balance, asks for this amount (INITIALIZE LOAD)."""
    _check_id(card_id, "card")
    _check_version(key_version)
    _check_fields(wallet, counter)
    if not 0 < amount <= _U32 or not 0 <= balance <= _U32:
        raise MessageError("amount 1..2**32-1, balance 0..2**32-1", amount=amount, balance=balance)
    return _INIT_LOAD.pack(INIT_LOAD_TYPE, LOAD_FORMAT, key_version, card_id, wallet, counter, amount,
                           int(unit), balance)


def admin_message(card_id: bytes, *, key_version: int, counter: int, op: AdminOp,
                  payload: bytes = b"") -> bytes:
    """What the issuer MACs under the card's ADMIN key for a script; counter is the card's current one, so
    a script runs once (the card advances its counter when it applies one)."""
    _check_id(card_id, "card")
    _check_version(key_version)
    _check_fields(0, counter)
    if len(payload) > 64:
        raise MessageError("a script payload is at most 64 bytes", length=len(payload))
    head = _ADMIN.pack(ADMIN_TYPE, LOAD_FORMAT, key_version, card_id, counter, int(op), len(payload))
    return head + payload
