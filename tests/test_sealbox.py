"""contracts.sealbox: secrets sealed to one device's public key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import MessageError
from contracts.sealbox import MAX_PLAINTEXT, SealError, open_sealed, seal

DEVICE = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
CONTEXT = b"forecourt-keys|T-0001|0f8fad5b-d9cb-469f-a165-70867728950e"
SECRET = b'{"pin_key": "00112233445566778899aabbccddeeff"}'


def test_round_trip() -> None:
    box = seal(DEVICE.public_key(), SECRET, context=CONTEXT)
    assert open_sealed(DEVICE, box, context=CONTEXT) == SECRET


@given(st.binary(max_size=MAX_PLAINTEXT))
def test_any_plaintext_round_trips(plaintext: bytes) -> None:
    assert open_sealed(DEVICE, seal(DEVICE.public_key(), plaintext, context=b"c"), context=b"c") == plaintext


def test_each_box_has_a_fresh_ephemeral_key() -> None:
    boxes = [base64.b64decode(seal(DEVICE.public_key(), SECRET, context=CONTEXT)) for _ in range(20)]
    assert len({b[1:66] for b in boxes}) == 20


def test_layout_opens_by_hand() -> None:
    """01 | ephemeral point | nonce | AES-GCM: ECDH, HKDF-SHA256 (info names both keys), AAD 01 | context."""
    raw = base64.b64decode(seal(DEVICE.public_key(), SECRET, context=CONTEXT), validate=True)
    assert raw[0] == 1 and raw[1] == 4 and len(raw) == 1 + 65 + 12 + len(SECRET) + 16
    ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[1:66])
    mine = DEVICE.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"forecourt sealbox v1" + raw[1:66] + mine).derive(DEVICE.exchange(ec.ECDH(), ephemeral))
    assert AESGCM(key).decrypt(raw[66:78], raw[78:], b"\x01" + CONTEXT) == SECRET


def test_another_key_does_not_open() -> None:
    box = seal(DEVICE.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError, match="does not open"):
        open_sealed(OTHER, box, context=CONTEXT)


@pytest.mark.parametrize("context", [b"forecourt-keys|T-0002|0f8fad5b-d9cb-469f-a165-70867728950e",
                                     CONTEXT[:-1], CONTEXT + b"x"])
def test_another_context_does_not_open(context: bytes) -> None:
    box = seal(DEVICE.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError, match="does not open"):
        open_sealed(DEVICE, box, context=context)


def test_every_tampered_byte_is_refused() -> None:
    raw = base64.b64decode(seal(DEVICE.public_key(), SECRET, context=CONTEXT))
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        with pytest.raises(SealError):
            open_sealed(DEVICE, base64.b64encode(bytes(bad)).decode(), context=CONTEXT)


@pytest.mark.parametrize("cut", [0, 1, 40, 66, 77, 78, 93])
def test_truncated_is_refused(cut: int) -> None:
    raw = base64.b64decode(seal(DEVICE.public_key(), SECRET, context=CONTEXT))
    with pytest.raises(SealError):
        open_sealed(DEVICE, base64.b64encode(raw[:cut]).decode(), context=CONTEXT)


def test_last_tag_byte_cut_is_refused() -> None:
    raw = base64.b64decode(seal(DEVICE.public_key(), SECRET, context=CONTEXT))
    with pytest.raises(SealError, match="does not open"):
        open_sealed(DEVICE, base64.b64encode(raw[:-1]).decode(), context=CONTEXT)


@pytest.mark.parametrize("text", ["", "not base64!", "AAAA====", "\u00e9t\u00e9"])
def test_garbage_is_refused_as_a_message_error(text: str) -> None:
    with pytest.raises(MessageError):
        open_sealed(DEVICE, text, context=CONTEXT)


def test_errors_carry_no_content() -> None:
    box = seal(DEVICE.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError) as info:
        open_sealed(OTHER, box, context=CONTEXT)
    assert box not in str(info.value) and "pin_key" not in str(info.value) and not info.value.context


def test_wrong_key_kinds_are_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SealError, match="P-256"):
        seal(p384.public_key(), SECRET, context=CONTEXT)
    with pytest.raises(SealError, match="P-256"):
        seal(ed25519.Ed25519PrivateKey.generate().public_key(), SECRET, context=CONTEXT)  # type: ignore[arg-type]
    with pytest.raises(SealError, match="P-256"):
        open_sealed(p384, seal(DEVICE.public_key(), SECRET, context=CONTEXT), context=CONTEXT)


def test_an_empty_context_and_an_oversize_plaintext_are_refused() -> None:
    with pytest.raises(SealError, match="context"):
        seal(DEVICE.public_key(), SECRET, context=b"")
    with pytest.raises(SealError, match="too long"):
        seal(DEVICE.public_key(), bytes(MAX_PLAINTEXT + 1), context=CONTEXT)


def test_a_box_fits_the_enroll_reply_field() -> None:
    box = seal(DEVICE.public_key(), bytes(MAX_PLAINTEXT), context=CONTEXT)
    assert len(box) <= 8000
