"""The card number of a fleet authorization request, sealed for the registry: pure, no I/O.

The terminal and the registry share the terminal's AES PIN key. Neither uses it for data: both derive a
separate PAN key from it (HKDF-SHA256, RFC 5869, a key-derivation function in the sense of NIST SP 800-108
and SP 800-56C, with a label of its own), as DUKPT derives working keys per use from one key (ANSI X9.24-3
6.1). The PAN is packed as BCD padded with F to 19 digits (so every number seals to one length) and
enciphered with AES-GCM (NIST SP 800-38D) under a random 96-bit nonce, its associated data the request it
belongs to (request id, terminal, station): a sealed number copied into another request does not open.

Wire form ("pan_sealed"): upper-case hex of version byte 01 | nonce (12) | ciphertext (10) | tag (16).

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

import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contracts.errors import MessageError

__all__ = ["PAN_SEALED", "PanSealError", "derive_pan_key", "seal_pan", "unseal_pan"]

VERSION = 0x01
INFO = b"forecourt pan v1"       # the HKDF label: this key, and no other, seals card numbers
_NONCE, _PAN, _TAG = 12, 10, 16  # 10 bytes of BCD: 19 digits and an F, the longest PAN (ISO/IEC 7812-1)
PAN_SEALED = re.compile(f"01[0-9A-F]{{{2 * (_NONCE + _PAN + _TAG)}}}", re.ASCII)
_DIGITS = re.compile(r"[0-9]{12,19}", re.ASCII)


class PanSealError(MessageError):
    """A sealed card number that is malformed, or does not open under this key for this request."""


def derive_pan_key(pin_key: bytes) -> bytes:
    """The 256-bit PAN key derived from a terminal's AES PIN key (16, 24 or 32 bytes)."""
    if len(pin_key) not in (16, 24, 32):
        raise PanSealError("PIN key must be an AES key of 16, 24 or 32 bytes", size=len(pin_key))
    # RFC 5869 2.2: salt absent (zeros); the PIN key is already uniformly random
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(pin_key)


def _aad(request_id: str, terminal: str, station: str) -> bytes:
    """Version and request fields, each length-prefixed, so no two requests share associated data."""
    out = bytearray([VERSION])
    for part in (request_id, terminal, station):
        raw = part.encode("utf-8")
        if len(raw) > 255:
            raise PanSealError("request field too long to seal against")
        out += bytes([len(raw)]) + raw
    return bytes(out)


def seal_pan(key: bytes, pan: str, *, request_id: str, terminal: str, station: str,
             nonce: bytes | None = None) -> str:
    """The PAN sealed for this request (nonce: only for tests with fixed vectors; random otherwise)."""
    if _DIGITS.fullmatch(pan) is None:
        raise PanSealError("card number must be 12 to 19 digits")
    nonce = os.urandom(_NONCE) if nonce is None else nonce
    if len(nonce) != _NONCE:
        raise PanSealError("nonce must be 96 bits")
    packed = bytes.fromhex(pan.ljust(2 * _PAN, "F"))
    sealed = AESGCM(key).encrypt(nonce, packed, _aad(request_id, terminal, station))
    return (bytes([VERSION]) + nonce + sealed).hex().upper()


def unseal_pan(key: bytes, sealed: str, *, request_id: str, terminal: str, station: str) -> str:
    """The PAN from its sealed form; PanSealError if it is malformed, tampered with, sealed under another
    key or for another request. The error never carries the sealed text or the number."""
    if not isinstance(sealed, str) or PAN_SEALED.fullmatch(sealed) is None:
        raise PanSealError("sealed card number is malformed")
    raw = bytes.fromhex(sealed)
    nonce, body = raw[1:1 + _NONCE], raw[1 + _NONCE:]
    try:
        packed = AESGCM(key).decrypt(nonce, body, _aad(request_id, terminal, station))
    except InvalidTag as exc:
        raise PanSealError("sealed card number does not open for this request") from exc
    except ValueError as exc:          # a key of a size AES does not take
        raise PanSealError("PAN key is not an AES key") from exc
    pan = packed.hex().upper().rstrip("F")
    if _DIGITS.fullmatch(pan) is None:
        raise PanSealError("sealed card number holds no card number")
    return pan
