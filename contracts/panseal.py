"""The card number of a fleet authorization request, sealed for the registry: pure, no I/O.

The terminal and the registry share the terminal's AES PIN key. Neither uses it for data: both derive a
separate PAN key from it (HKDF-SHA256, RFC 5869, a key-derivation function in the sense of NIST SP 800-108
and SP 800-56C, with a label of its own), as DUKPT derives working keys per use from one key (ANSI X9.24-3
6.1). The PAN is packed as BCD padded with F to 19 digits (so every number seals to one length) and
enciphered with AES-GCM (NIST SP 800-38D) under a random 96-bit nonce, its associated data the request it
belongs to (request id, terminal, station): a sealed number copied into another request does not open.

Wire form ("pan_sealed"): upper-case hex of version byte 01 | nonce (12) | ciphertext (10) | tag (16).
A contactless tag has no PAN: its number is "U" and the hex of its UID (ISO/IEC 14443-3: 4, 7 or 10
bytes; ISO/IEC 15693 and FeliCa: 8), sealed as version 02: ciphertext of 11 bytes (the UID's length, then
the UID padded with zeros), so every tag seals to one length.

The terminal's stop-list (the signed configuration) names a refused card by stop_entry(): HMAC-SHA256
(RFC 2104) of its number under a stop-list key derived from the same PIN key with a label of its own, cut to
128 bits. Each terminal's list is its own; a list read off one terminal opens nothing on another.

>>> key = derive_pan_key(bytes(16))
>>> sealed = seal_pan(key, "7077001000000019", request_id="r1", terminal="T-0001", station="ST-001")
>>> len(sealed), sealed[:2], PAN_SEALED.fullmatch(sealed) is not None
(78, '01', True)
>>> unseal_pan(key, sealed, request_id="r1", terminal="T-0001", station="ST-001")
'7077001000000019'
>>> unseal_pan(key, sealed, request_id="r2", terminal="T-0001", station="ST-001")
Traceback (most recent call last):
    ...
contracts.panseal.PanSealError: sealed card number does not open for this request
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contracts.errors import MessageError

__all__ = ["PAN_SEALED", "TAG_NUMBER", "PanSealError", "derive_pan_key", "derive_stop_key", "pin_pan",
           "seal_pan", "stop_entry", "unseal_pan"]

VERSION, TAG_VERSION = 0x01, 0x02
INFO = b"forecourt pan v1"       # the HKDF label: this key, and no other, seals card numbers
STOP_INFO = b"forecourt stop-list v1"
_NONCE, _PAN, _TAG = 12, 10, 16  # 10 bytes of BCD: 19 digits and an F, the longest PAN (ISO/IEC 7812-1)
_UID = 11                        # length byte and up to 10 bytes of UID
PAN_SEALED = re.compile(f"01[0-9A-F]{{{2 * (_NONCE + _PAN + _TAG)}}}"
                        f"|02[0-9A-F]{{{2 * (_NONCE + _UID + _TAG)}}}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{12,19}", re.ASCII)
TAG_NUMBER = re.compile(r"U(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{16}|[0-9A-F]{20})", re.ASCII)


class PanSealError(MessageError):
    """A sealed card number that is malformed, or does not open under this key for this request."""


def derive_pan_key(pin_key: bytes) -> bytes:
    """The 256-bit PAN key derived from a terminal's AES PIN key (16, 24 or 32 bytes)."""
    if len(pin_key) not in (16, 24, 32):
        raise PanSealError("PIN key must be an AES key of 16, 24 or 32 bytes", size=len(pin_key))
    # RFC 5869 2.2: salt absent (zeros); the PIN key is already uniformly random
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(pin_key)


def pin_pan(number: str) -> str:
    """The PAN a PIN block binds to (ISO 9564-1 format 4 takes 12 to 19 digits): a card's own PAN; for a tag,
    which has none, the decimal value of its UID, zero-filled to 12 digits and cut to its last 19.

    >>> pin_pan("7077001000000019"), pin_pan("U04A1B2C3"), pin_pan("U04A1B2C3D4E5F6071829")
    ('7077001000000019', '000077705923', '2273100789168674857')
    """
    if TAG_NUMBER.fullmatch(number) is None:
        return number
    return str(int(number[1:], 16)).zfill(12)[-19:]


def derive_stop_key(pin_key: bytes) -> bytes:
    """The 256-bit stop-list key derived from a terminal's AES PIN key."""
    if len(pin_key) not in (16, 24, 32):
        raise PanSealError("PIN key must be an AES key of 16, 24 or 32 bytes", size=len(pin_key))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=STOP_INFO).derive(pin_key)


def stop_entry(stop_key: bytes, number: str) -> str:
    """A card number's stop-list entry (32 hex digits) under one terminal's stop key.

    >>> entry = stop_entry(derive_stop_key(bytes(16)), "7077001000000019")
    >>> len(entry), entry == stop_entry(derive_stop_key(bytes(16)), "7077001000000027")
    (32, False)
    """
    return hmac.new(stop_key, number.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def _aad(request_id: str, terminal: str, station: str, version: int = VERSION) -> bytes:
    """Version and request fields, each length-prefixed, so no two requests share associated data."""
    out = bytearray([version])
    for part in (request_id, terminal, station):
        raw = part.encode("utf-8")
        if len(raw) > 255:
            raise PanSealError("request field too long to seal against")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def seal_pan(key: bytes, pan: str, *, request_id: str, terminal: str, station: str,
             nonce: bytes | None = None) -> str:
    """The PAN (or a tag's "U..." number) sealed for this request (nonce: only for tests with fixed vectors;
    random otherwise)."""
    if TAG_NUMBER.fullmatch(pan) is not None:
        uid = bytes.fromhex(pan[1:])
        version, packed = TAG_VERSION, bytes([len(uid)]) + uid.ljust(_UID - 1, b"\0")
    elif _DIGITS.fullmatch(pan) is not None:
        version, packed = VERSION, bytes.fromhex(pan.ljust(2 * _PAN, "F"))
    else:
        raise PanSealError("card number must be 12 to 19 digits, or a tag's U and 4, 7 or 10 bytes of hex")
    nonce = os.urandom(_NONCE) if nonce is None else nonce
    if len(nonce) != _NONCE:
        raise PanSealError("nonce must be 96 bits")
    sealed = AESGCM(key).encrypt(nonce, packed, _aad(request_id, terminal, station, version))
    return (bytes([version]) + nonce + sealed).hex().upper()


def unseal_pan(key: bytes, sealed: str, *, request_id: str, terminal: str, station: str) -> str:
    """The PAN from its sealed form; PanSealError if it is malformed, tampered with, sealed under another
    key or for another request. The error never carries the sealed text or the number."""
    if not isinstance(sealed, str) or PAN_SEALED.fullmatch(sealed) is None:
        raise PanSealError("sealed card number is malformed")
    raw = bytes.fromhex(sealed)
    version, nonce, body = raw[0], raw[1:1 + _NONCE], raw[1 + _NONCE:]
    try:
        packed = AESGCM(key).decrypt(nonce, body, _aad(request_id, terminal, station, version))
    except InvalidTag as exc:
        raise PanSealError("sealed card number does not open for this request") from exc
    except ValueError as exc:          # a key of a size AES does not take
        raise PanSealError("PAN key is not an AES key") from exc
    if version == TAG_VERSION:
        tag = "U" + packed[1:1 + packed[0]].hex().upper()
        if TAG_NUMBER.fullmatch(tag) is None or any(packed[1 + packed[0]:]):
            raise PanSealError("sealed card number holds no tag number")
        return tag
    pan = packed.hex().upper().rstrip("F")
    if _DIGITS.fullmatch(pan) is None:
        raise PanSealError("sealed card number holds no card number")
    return pan
