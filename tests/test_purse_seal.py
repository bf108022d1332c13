"""A SAM key sealed to one SAM: round trip, and it opens for no other key, context or changed byte.

The ECDH and the one-step KDF are recomputed here with `cryptography` to open a box independently.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import purse_seal
from contracts.errors import MessageError
from contracts.purse_seal import SealError, open_sealed, sam_key_context, seal_for_sam
from contracts.purse_session import public_bytes

SAM = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
SAM_ID = bytes.fromhex("5341000000000001")
CONTEXT = sam_key_context(SAM_ID, 1)
SECRET = bytes(range(16))


def test_round_trip_with_key_object_or_compressed_bytes() -> None:
    for recipient in (SAM.public_key(), public_bytes(SAM)):
        box = seal_for_sam(recipient, SECRET, context=CONTEXT)
        assert len(box) == 1 + 33 + 16 + 16 and box[0] == 1
        assert open_sealed(SAM, box, context=CONTEXT) == SECRET
    assert seal_for_sam(SAM.public_key(), SECRET, context=CONTEXT) != box      # fresh ephemeral each time


def test_opened_independently() -> None:
    box = seal_for_sam(SAM.public_key(), SECRET * 2, context=CONTEXT)
    eph = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), box[1:34])
    shared = SAM.exchange(ec.ECDH(), eph)
    fixed = b"forecourt purse v1 seal\x00" + box[1:34] + public_bytes(SAM)
    out = ConcatKDFHash(hashes.SHA256(), 44, fixed).derive(shared)
    assert AESGCM(out[:32]).decrypt(out[32:], box[34:], CONTEXT) == SECRET * 2


@pytest.mark.parametrize(("key", "context", "reason"), [
    (OTHER, CONTEXT, "bad_seal"),
    (SAM, sam_key_context(SAM_ID, 2), "bad_seal"),
    (SAM, sam_key_context(bytes(8), 1), "bad_seal"),
])
def test_wrong_key_or_context_fails(key: ec.EllipticCurvePrivateKey, context: bytes, reason: str) -> None:
    box = seal_for_sam(SAM.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError) as caught:
        open_sealed(key, box, context=context)
    assert caught.value.reason == reason and isinstance(caught.value, MessageError)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_changed_byte_fails(data: st.DataObject) -> None:
    box = seal_for_sam(SAM.public_key(), SECRET, context=CONTEXT)
    index = data.draw(st.integers(0, len(box) - 1))
    changed = box[:index] + bytes([box[index] ^ data.draw(st.integers(1, 255))]) + box[index + 1:]
    with pytest.raises(SealError) as caught:
        open_sealed(SAM, changed, context=CONTEXT)
    expected = {"format"} if index == 0 else {"bad_key", "bad_seal"} if index < 34 else {"bad_seal"}
    assert caught.value.reason in expected


def test_lengths_are_refused() -> None:
    box = seal_for_sam(SAM.public_key(), SECRET, context=CONTEXT)
    for bad in (box[:50], box + bytes(purse_seal.MAX_SECRET)):
        with pytest.raises(SealError, match="length"):
            open_sealed(SAM, bad, context=CONTEXT)
    for secret in (b"", bytes(purse_seal.MAX_SECRET + 1)):
        with pytest.raises(SealError, match="length"):
            seal_for_sam(SAM.public_key(), secret, context=CONTEXT)
    with pytest.raises(SealError, match="format"):
        sam_key_context(SAM_ID[:7], 1)


def test_secret_not_in_the_error() -> None:
    box = seal_for_sam(SAM.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError) as caught:
        open_sealed(OTHER, box, context=CONTEXT)
    assert SECRET.hex() not in str(caught.value) and repr(SECRET) not in str(caught.value)


def test_doctests() -> None:
    import doctest
    assert doctest.testmod(purse_seal).failed == 0
