"""contracts.panseal: the card number of a fleet authorization request, sealed for the registry."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import MessageError
from contracts.panseal import PAN_SEALED, PanSealError, derive_pan_key, seal_pan, unseal_pan

PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")
PAN = "7077001000000019"
REQ = {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "terminal": "T-0001", "station": "ST-001"}
KEY = derive_pan_key(PIN_KEY)


def test_round_trip() -> None:
    sealed = seal_pan(KEY, PAN, **REQ)
    assert PAN_SEALED.fullmatch(sealed)
    assert unseal_pan(KEY, sealed, **REQ) == PAN


@given(st.text("0123456789", min_size=12, max_size=19))
def test_every_length_round_trips_and_seals_to_one_length(pan: str) -> None:
    sealed = seal_pan(KEY, pan, **REQ)
    assert len(sealed) == 78                  # the length of the number does not show
    assert unseal_pan(KEY, sealed, **REQ) == pan


def test_the_sealed_form_holds_no_run_of_the_card_number() -> None:
    for _ in range(200):
        sealed = seal_pan(KEY, PAN, **REQ)
        assert PAN not in sealed and PAN[-4:] + PAN[:6] not in sealed
        assert not any(PAN[i:i + 10] in sealed for i in range(len(PAN) - 9))   # by chance: p < 1e-7


def test_each_seal_takes_a_fresh_nonce() -> None:
    assert len({seal_pan(KEY, PAN, **REQ) for _ in range(50)}) == 50


def test_the_pan_key_is_derived_not_the_pin_key() -> None:
    """HKDF-SHA256 (RFC 5869) of the PIN key with the label "forecourt pan v1", computed independently."""
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"\x00" * 32,
                    info=b"forecourt pan v1").derive(PIN_KEY)
    assert KEY == expected and KEY[:16] != PIN_KEY and len(KEY) == 32
    sealed = bytes.fromhex(seal_pan(KEY, PAN, **REQ))
    with pytest.raises(InvalidTag):           # the PIN key itself does not open it
        AESGCM(PIN_KEY).decrypt(sealed[1:13], sealed[13:], None)


def test_fixed_vector_layout() -> None:
    """Version 01 | nonce | AES-GCM(BCD PAN padded with F to 10 bytes) | tag, checked with AESGCM directly."""
    nonce = bytes(range(12))
    sealed = bytes.fromhex(seal_pan(KEY, PAN, nonce=nonce, **REQ))
    aad = b"\x01" + b"".join(bytes([len(v)]) + v.encode() for v in REQ.values())
    assert sealed[0] == 1 and sealed[1:13] == nonce
    assert AESGCM(KEY).decrypt(nonce, sealed[13:], aad) == bytes.fromhex(PAN + "FFF" + "F")


@pytest.mark.parametrize("field", ["request_id", "terminal", "station"])
def test_sealed_for_another_request_does_not_open(field: str) -> None:
    sealed = seal_pan(KEY, PAN, **REQ)
    with pytest.raises(PanSealError, match="does not open"):
        unseal_pan(KEY, sealed, **(REQ | {field: REQ[field] + "x"}))


def test_fields_cannot_be_shifted_between_one_another() -> None:
    sealed = seal_pan(KEY, PAN, request_id="r", terminal="T-1", station="S")
    with pytest.raises(PanSealError):
        unseal_pan(KEY, sealed, request_id="rT", terminal="-1", station="S")


def test_another_terminals_key_does_not_open() -> None:
    sealed = seal_pan(KEY, PAN, **REQ)
    with pytest.raises(PanSealError, match="does not open"):
        unseal_pan(derive_pan_key(bytes(16)), sealed, **REQ)


@pytest.mark.parametrize("at", [2, 20, 30, 77])
def test_a_tampered_byte_does_not_open(at: int) -> None:
    sealed = seal_pan(KEY, PAN, **REQ)
    flipped = sealed[:at] + ("0" if sealed[at] != "0" else "1") + sealed[at + 1:]
    with pytest.raises(PanSealError):
        unseal_pan(KEY, flipped, **REQ)


@pytest.mark.parametrize("bad", ["", "01", "00" + "A" * 76, "01" + "a" * 76, "01" + "A" * 75, "01" + "A" * 78,
                                 PAN, 1234])
def test_malformed_or_truncated_is_a_typed_error(bad: object) -> None:
    with pytest.raises(PanSealError, match="malformed") as err:
        unseal_pan(KEY, bad, **REQ)  # type: ignore[arg-type]
    assert isinstance(err.value, MessageError)


def test_truncated_seal_is_refused() -> None:
    sealed = seal_pan(KEY, PAN, **REQ)
    with pytest.raises(PanSealError):
        unseal_pan(KEY, sealed[:-2], **REQ)


@pytest.mark.parametrize("pan", ["70770010000", "7" * 20, "7077 0010 0000 0019",
                                 "\uff17\uff10\uff17\uff17" * 4])      # fullwidth digits: not ASCII
def test_only_a_card_number_is_sealed_and_the_error_does_not_echo_it(pan: str) -> None:
    with pytest.raises(PanSealError) as err:
        seal_pan(KEY, pan, **REQ)
    assert pan not in str(err.value)


def test_pin_key_must_be_an_aes_key() -> None:
    with pytest.raises(PanSealError):
        derive_pan_key(b"\x00" * 8)


def test_a_bad_nonce_is_refused() -> None:
    with pytest.raises(PanSealError):
        seal_pan(KEY, PAN, nonce=b"\x00" * 8, **REQ)
