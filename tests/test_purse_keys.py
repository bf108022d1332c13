"""contracts.purse_keys: published vectors for AES-CMAC and the SP 800-108 counter-mode KDF; behaviour."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ConfigError, MessageError
from contracts.purse_keys import (
    LOAD_LEN,
    MAC_LEN,
    AdminOp,
    Purpose,
    PurseKeyError,
    Unit,
    admin_message,
    derive_card_key,
    derive_sam_key,
    init_load_message,
    kdf_counter_cmac,
    load_message,
    mac,
    verify_mac,
)

# RFC 4493 section 4, examples 1-4 (AES-128 key K, messages of 0, 16, 40 and 64 bytes), which are the
# AES-128 examples of NIST SP 800-38B appendix D.1.
RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_M = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710")
RFC4493 = [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
]

# NIST CAVP, SP 800-108 KBKDF test vectors (KDFCTR_gen.txt), [PRF=CMAC_AES128] [CTRLOCATION=BEFORE_FIXED]
# [RLEN=8_BITS], COUNT=0, L=128: KI, FixedInputData, KO.
CAVP_KI = bytes.fromhex("dff1e50ac0b69dc40f1051d46c2b069c")
CAVP_FIXED = bytes.fromhex(
    "c16e6e02c5a3dcc8d78b9ac1306877761310455b4e41469951d9e6c2245a064b"
    "33fd8c3b01203a7824485bf0a64060c4648b707d2607935699316ea5")
CAVP_KO = bytes.fromhex("8be8f0869b3c0ba97b71863d1b9f7813")
# The same file, [CTRLOCATION=BEFORE_FIXED] [RLEN=32_BITS] (the 32-bit counter the purse keys use): KI,
# FixedInputData (60 bytes), KO; one with L=256 (two CMAC blocks) and one with [PRF=CMAC_AES256].
CAVP_R32 = [
    ("c10b152e8c97b77e18704e0f0bd38305",
     ("98cd4cbbbebe15d17dc86e6dbad800a2dcbd64f7c7ad0e78e9cf94ffdba89d03"
     "e97eadf6c4f7b806caf52aa38f09d0eb71d71f497bcc6906b48d36c4"),
     "26faf61908ad9ee881b8305c221db53f"),
    ("695f1b1a16c949cea51cdf2554ec9d42",
     ("4fce5942832a390aa1cbe8a0bf9d202cb799e986c9d6b51f45e4d597a6b57f06"
     "a4ebfec6467335d116b7f5f9c5b954062f661820f5db2a5bbb3e0625"),
     "d34b601ec18c34dfa0f9e0b7523e218bdddb9befe8d08b6c0202d75ace0dba89"),
    ("d0b1b3b70b2393c48ca05159e7e28cbeadea93f28a7cdae964e5136070c45d5c",
     ("dd2f151a3f173492a6fbbb602189d51ddf8ef79fc8e96b8fcbe6dabe73a35b48"
     "104f9dff2d63d48786d2b3af177091d646a9efae005bdfacb61a1214"),
     "8c449fb474d1c1d4d2a33827103b656a"),
]

MASTER = bytes(range(16))
CARD = bytes.fromhex("7077000000000019")
OTHER_CARD = bytes.fromhex("7077000000000027")


@pytest.mark.parametrize(("length", "expected"), RFC4493)
def test_aes_cmac_rfc4493(length: int, expected: str) -> None:
    message = RFC4493_M[:length]
    assert mac(RFC4493_KEY, message).hex() == expected
    assert verify_mac(RFC4493_KEY, message, bytes.fromhex(expected))


def test_kbkdf_counter_cmac_aes128_cavp() -> None:
    assert kdf_counter_cmac(CAVP_KI, CAVP_FIXED, 16, counter_bytes=1) == CAVP_KO


@pytest.mark.parametrize(("ki", "fixed", "ko"), CAVP_R32)
def test_kbkdf_counter_cmac_cavp_32_bit_counter(ki: str, fixed: str, ko: str) -> None:
    out = kdf_counter_cmac(bytes.fromhex(ki), bytes.fromhex(fixed), len(ko) // 2)
    assert out.hex() == ko


def test_kbkdf_is_cmac_of_counter_and_fixed_input() -> None:
    # SP 800-108 counter mode, one block: K(1) = PRF(KI, [1]_32 || fixed); two blocks add [2]_32.
    fixed = b"label\x00context\x00\x00\x01\x00"
    two = kdf_counter_cmac(MASTER, fixed, 32)
    assert two[:16] == mac(MASTER, b"\x00\x00\x00\x01" + fixed)
    assert two[16:] == mac(MASTER, b"\x00\x00\x00\x02" + fixed)


def test_card_key_is_the_documented_kdf() -> None:
    fixed = b"forecourt purse v1 record\x00" + CARD + b"\x01" + (128).to_bytes(4, "big")
    assert derive_card_key(MASTER, CARD, Purpose.RECORD, version=1) == kdf_counter_cmac(MASTER, fixed, 16)


def test_keys_differ_by_card_purpose_version_and_master() -> None:
    keys = {derive_card_key(m, c, p, version=v)
            for m in (MASTER, bytes(16)) for c in (CARD, OTHER_CARD)
            for p in (Purpose.AUTH, Purpose.RECORD, Purpose.LOAD, Purpose.ADMIN) for v in (1, 2)}
    keys |= {derive_sam_key(MASTER, s, version=1) for s in (CARD, OTHER_CARD)}
    assert len(keys) == 2 * 2 * 4 * 2 + 2


def test_aes256_master_gives_aes256_key() -> None:
    assert len(derive_card_key(bytes(32), CARD, Purpose.LOAD, version=1)) == 32


@pytest.mark.parametrize("bad", [
    lambda: derive_card_key(bytes(15), CARD, Purpose.RECORD, version=1),
    lambda: derive_card_key(MASTER, CARD[:7], Purpose.RECORD, version=1),
    lambda: derive_card_key(MASTER, CARD, Purpose.RECORD, version=0),
    lambda: derive_card_key(MASTER, CARD, Purpose.RECORD, version=256),
    lambda: derive_card_key(MASTER, CARD, Purpose.SAM, version=1),
    lambda: derive_sam_key(MASTER, b"T-1", version=1),
    lambda: mac(bytes(8), b""),
])
def test_bad_key_material_is_a_typed_error(bad: object) -> None:
    with pytest.raises(PurseKeyError) as info:
        bad()  # type: ignore[operator]
    assert isinstance(info.value, ConfigError)


def _load(**changes: object) -> bytes:
    fields: dict[str, object] = {"key_version": 1, "wallet": 2, "counter": 7, "amount": 5000,
                                 "unit": Unit.VOLUME, "load_id": bytes(range(16))}
    fields.update(changes)
    return load_message(CARD, **fields)  # type: ignore[arg-type]


def test_load_message_layout() -> None:
    message = _load()
    assert len(message) == LOAD_LEN == 37
    assert message == (b"\x4c\x01\x01" + CARD + b"\x02" + (7).to_bytes(4, "big") + (5000).to_bytes(4, "big")
                       + b"\x02" + bytes(range(16)))


@pytest.mark.parametrize("change", [
    {"wallet": 8}, {"wallet": -1}, {"counter": 2**32}, {"amount": 0}, {"amount": 2**32},
    {"load_id": bytes(15)},
])
def test_load_message_out_of_range_is_a_message_error(change: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        _load(**change)


def test_init_load_message_layout() -> None:
    message = init_load_message(CARD, key_version=3, wallet=1, counter=9, amount=2500, unit=Unit.MONEY,
                                balance=700)
    assert message == (b"\x49\x01\x03" + CARD + b"\x01" + (9).to_bytes(4, "big") + (2500).to_bytes(4, "big")
                       + b"\x01" + (700).to_bytes(4, "big"))


def test_admin_message_layout_and_bounds() -> None:
    payload = b"\x02" + (10000).to_bytes(4, "big") + (0).to_bytes(4, "big")
    message = admin_message(CARD, key_version=1, counter=12, op=AdminOp.SET_LIMITS, payload=payload)
    assert message == b"\x41\x01\x01" + CARD + (12).to_bytes(4, "big") + b"\x04\x09" + payload
    assert admin_message(CARD, key_version=1, counter=12, op=AdminOp.BLOCK)[-2:] == b"\x01\x00"
    with pytest.raises(MessageError):
        admin_message(CARD, key_version=1, counter=12, op=AdminOp.BLOCK, payload=bytes(65))
    with pytest.raises(MessageError):
        init_load_message(CARD, key_version=1, wallet=8, counter=0, amount=1, unit=Unit.MONEY, balance=0)


def test_load_mac_checks_once_per_card_counter_and_key() -> None:
    key = derive_card_key(MASTER, CARD, Purpose.LOAD, version=1)
    tag = mac(key, _load())
    assert verify_mac(key, _load(), tag)
    assert not verify_mac(key, _load(counter=8), tag)            # the next load needs a new MAC
    assert not verify_mac(key, _load(amount=5001), tag)
    assert not verify_mac(derive_card_key(MASTER, CARD, Purpose.LOAD, version=2), _load(), tag)
    assert not verify_mac(derive_card_key(MASTER, CARD, Purpose.RECORD, version=1), _load(), tag)
    assert not verify_mac(key, _load(), tag[:8])                 # a truncated tag is refused


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=80), position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_any_changed_byte_fails_verification(message: bytes, position: int, flip: int) -> None:
    key = derive_card_key(MASTER, CARD, Purpose.RECORD, version=1)
    tag = mac(key, message)
    assert len(tag) == MAC_LEN and verify_mac(key, message, tag)
    both = bytearray(message + tag)
    both[position % len(both)] ^= flip
    assert not verify_mac(key, bytes(both[:len(message)]), bytes(both[len(message):]))
