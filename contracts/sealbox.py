"""Secrets sealed to one device's public key (the keys a new terminal gets at enrollment): pure, no I/O.

An ECIES-style box (SEC 1 v2 section 5.1; the same shape as HPKE's DHKEM base mode, RFC 9180 4.1): a fresh
ephemeral P-256 key per box, ECDH with the recipient's key, HKDF-SHA256 (RFC 5869) of the shared secret to a
256-bit key, AES-256-GCM (NIST SP 800-38D). The HKDF info binds both public keys (as RFC 9180's kem_context
does), so a box opens only for the key it was made for; the caller's context (what the secret is for and
which request it answers) is the associated data, so a box copied into another reply does not open.

Wire form: base64 (standard alphabet) of version 01 | ephemeral public key (65, X9.62 uncompressed) |
nonce (12) | ciphertext | tag (16).

>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> device = ec.generate_private_key(ec.SECP256R1())
>>> box = seal(device.public_key(), b"secret", context=b"keys|T-1|r1")
>>> open_sealed(device, box, context=b"keys|T-1|r1")
b'secret'
>>> open_sealed(device, box, context=b"keys|T-2|r1")
Traceback (most recent call last):
    ...
contracts.sealbox.SealError: sealed box does not open for this key and context
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contracts.errors import MessageError

__all__ = ["MAX_PLAINTEXT", "SealError", "keys_context", "open_sealed", "seal"]

VERSION = 0x01
INFO = b"forecourt sealbox v1"
_POINT, _NONCE, _TAG = 65, 12, 16
_HEAD = 1 + _POINT + _NONCE
# The ENROLL_REPLY field takes 8000 base64 characters: 6000 bytes, less the header and the tag.
MAX_PLAINTEXT = 4096


class SealError(MessageError):
    """A box that is malformed, or does not open under this key for this context; a key of the wrong kind."""


def keys_context(device_id: str, request_id: str) -> bytes:
    """The context of the keys a device gets at enrollment (registry.keyinject seals, provisioning opens).

    >>> keys_context("T-0001", "0f8fad5b-d9cb-469f-a165-70867728950e")
    b'forecourt-keys|T-0001|0f8fad5b-d9cb-469f-a165-70867728950e'
    """
    return b"forecourt-keys|" + device_id.encode("ascii") + b"|" + request_id.encode("ascii")


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _p256(key: object) -> None:
    if not (isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
            and isinstance(key.curve, ec.SECP256R1)):
        raise SealError("sealbox keys must be EC P-256 keys")


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    # RFC 5869 2.2: no salt (zeros); the info names the scheme and both public keys
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=INFO + ephemeral + recipient).derive(shared)


def _aad(context: bytes) -> bytes:
    if not isinstance(context, bytes) or not context:
        raise SealError("a sealed box needs a context (what it is for)")
    return bytes([VERSION]) + context


def seal(public_key: ec.EllipticCurvePublicKey, plaintext: bytes, *, context: bytes) -> str:
    """plaintext sealed to public_key (EC P-256) for context; base64 text."""
    _p256(public_key)
    if len(plaintext) > MAX_PLAINTEXT:
        raise SealError("plaintext too long to seal", size=len(plaintext), most=MAX_PLAINTEXT)
    aad = _aad(context)
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    epoint, rpoint = _point(ephemeral.public_key()), _point(public_key)
    key = _box_key(ephemeral.exchange(ec.ECDH(), public_key), epoint, rpoint)
    nonce = os.urandom(_NONCE)
    body = AESGCM(key).encrypt(nonce, plaintext, aad)
    return base64.b64encode(bytes([VERSION]) + epoint + nonce + body).decode("ascii")


def open_sealed(private_key: ec.EllipticCurvePrivateKey, sealed: str, *, context: bytes) -> bytes:
    """The plaintext of a box sealed to private_key's public key for context. SealError if the box is
    malformed, tampered with, sealed to another key or for another context; the error carries no content."""
    _p256(private_key)
    aad = _aad(context)
    try:
        raw = base64.b64decode(sealed, validate=True) if isinstance(sealed, str) else b""
    except (binascii.Error, ValueError) as exc:
        raise SealError("sealed box is not base64") from exc
    if len(raw) < _HEAD + _TAG or raw[0] != VERSION:
        raise SealError("sealed box is malformed", size=len(raw))
    epoint, nonce, body = raw[1:1 + _POINT], raw[1 + _POINT:_HEAD], raw[_HEAD:]
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), epoint)
    except ValueError as exc:          # not a point on P-256
        raise SealError("sealed box is malformed (ephemeral key)") from exc
    key = _box_key(private_key.exchange(ec.ECDH(), ephemeral), epoint, _point(private_key.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag as exc:
        raise SealError("sealed box does not open for this key and context") from exc
