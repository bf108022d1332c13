"""A secret sealed to one SAM's P-256 key (its SAM MAC key, at provisioning): pure, no I/O.

ECIES in the shape of SEC 1 v2 section 5.1: a fresh ephemeral P-256 key per box, ECDH with the SAM's key
(NIST SP 800-56A), the one-step KDF of SP 800-56C Rev. 2 section 4 with SHA-256 (ConcatKDF) to an AES-256
key and a 96-bit nonce, AES-256-GCM (SP 800-38D) with the caller's context as associated data. The KDF's
FixedInfo binds both public keys, so a box opens only for the key it was made for; the context says what
the secret is (sam_key_context: this SAM's id and the key version), so a box copied to another SAM or
version does not open. The key and nonce are used once (fresh ephemeral key), so the nonce can be derived.

Wire form: version 01 | ephemeral public key (33, compressed) | ciphertext | tag (16); it fits a short APDU.

>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> sam = ec.generate_private_key(ec.SECP256R1())
>>> context = sam_key_context(bytes(8), 1)
>>> box = seal_for_sam(sam.public_key(), bytes(16), context=context)
>>> len(box), open_sealed(sam, box, context=context) == bytes(16)
(66, True)
"""

from __future__ import annotations

import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from contracts.errors import MessageError
from contracts.purse_keys import ID_LEN, MAX_VERSION
from contracts.purse_session import KEY_LEN, SessionError, load_public_key, public_bytes

__all__ = ["MAX_SECRET", "SEAL_VERSION", "SealError", "open_sealed", "sam_key_context", "seal_for_sam"]

SEAL_VERSION = 0x01
LABEL = b"forecourt purse v1 seal"
MAX_SECRET = 128                  # a SAM key is 16 or 32 bytes; 1 + 33 + 128 + 16 fits a short APDU
_TAG = 16
_CURVE = ec.SECP256R1()


class SealError(MessageError):
    """A sealed box is malformed or does not open under this key for this context; reason says which."""

    def __init__(self, message: str, *, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


def sam_key_context(sam_id: bytes, key_version: int) -> bytes:
    """The context of a SAM MAC key sealed to that SAM: its id and the key's version.

    >>> sam_key_context(bytes.fromhex("5341000000000001"), 2)[-10:].hex()
    '00534100000000000102'
    """
    if len(sam_id) != ID_LEN or not 0 < key_version <= MAX_VERSION:
        raise SealError("a SAM id is 8 bytes, a key version 1..255", reason="format")
    return b"forecourt purse v1 sam key\x00" + sam_id + struct.pack(">B", key_version)


def _key_nonce(shared: bytes, ephemeral: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    fixed = LABEL + b"\x00" + ephemeral + recipient
    out = ConcatKDFHash(algorithm=hashes.SHA256(), length=44, otherinfo=fixed).derive(shared)
    return out[:32], out[32:]


def seal_for_sam(sam_public_key: ec.EllipticCurvePublicKey | bytes, secret: bytes, *,
                 context: bytes) -> bytes:
    """The secret sealed so only the holder of the SAM's private key opens it, for this context only."""
    recipient = load_public_key(sam_public_key) if isinstance(sam_public_key, bytes) else sam_public_key
    if not 0 < len(secret) <= MAX_SECRET:
        raise SealError(f"a sealed secret is 1..{MAX_SECRET} bytes", reason="length", length=len(secret))
    ephemeral = ec.generate_private_key(_CURVE)
    eph = public_bytes(ephemeral)
    key, nonce = _key_nonce(ephemeral.exchange(ec.ECDH(), recipient), eph, public_bytes(recipient))
    return bytes([SEAL_VERSION]) + eph + AESGCM(key).encrypt(nonce, secret, context)


def open_sealed(sam_private_key: ec.EllipticCurvePrivateKey, sealed: bytes, *, context: bytes) -> bytes:
    """The secret in a box made by seal_for_sam for this key and context; SealError otherwise."""
    if len(sealed) < 1 + KEY_LEN + 1 + _TAG or len(sealed) > 1 + KEY_LEN + MAX_SECRET + _TAG:
        raise SealError("a sealed box's length is wrong", reason="length", length=len(sealed))
    if sealed[0] != SEAL_VERSION:
        raise SealError("unknown sealed box version", reason="format", version=sealed[0])
    eph = sealed[1:1 + KEY_LEN]
    try:
        shared = sam_private_key.exchange(ec.ECDH(), load_public_key(eph))
    except SessionError:
        raise SealError("the box's ephemeral key is not a P-256 point", reason="bad_key") from None
    key, nonce = _key_nonce(shared, eph, public_bytes(sam_private_key))
    try:
        return AESGCM(key).decrypt(nonce, sealed[1 + KEY_LEN:], context)
    except InvalidTag:
        raise SealError("the box does not open for this key and context", reason="bad_seal") from None
