"""drivers.pinpad.dukpt_aes: AES DUKPT (ANSI X9.24-3-2017) against the X9 published test vectors.

Vector source: "Supplement to ANSI X9.24-3-2017 Test Vectors" (ASC X9, 2018-01-29,
https://x9.org/standards/x9-24-part-3-test-vectors/), AES-128 BDK FEDCBA9876543210F1F1F1F1F1F1F1F1,
initial key ID 1234567890123456 (and its AES-256 BDK). The supplement PDF itself was not at hand; its
hex values were taken from public transcriptions that cite it: openemv/dukpt test/dukpt_aes128_test.c
(intermediate keys, supplement pages 2, 5 and 6), several open-source test suites quoting Annex B and the
supplement for the working keys, and a payments-crypto knowledge file quoting the supplement's
format 4 example and its 2TDEA/3TDEA/AES-256 keys. Each value below was found in at least one such
transcription and agrees with every other transcription seen; only hex values were taken, no code.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psec.pinblock import decipher_pinblock_iso_4, encipher_pinblock_iso_4

from contracts.errors import PinPadError
from drivers.pinpad.dukpt_aes import (
    DerivationData,
    DukptError,
    DukptExhaustedError,
    DukptKeyError,
    TerminalDukpt,
    derive_initial_key,
    derive_intermediate_key,
    derive_working_key,
    host_derive_working_key,
)

BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
BDK256 = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1FEDCBA9876543210F1F1F1F1F1F1F1F1")
IKID = bytes.fromhex("1234567890123456")
IK = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")
IK256 = bytes.fromhex("CE9CE0C101D1138F97FB6CAD4DF045A7083D4EAE2D35A31789D01CCF0949550F")


def ksn(counter: int) -> bytes:
    return IKID + counter.to_bytes(4, "big")


# Supplement, AES-128 BDK: intermediate derivation ("transaction") keys, pages 2, 5 and 6.
INTERMEDIATE = {
    0x00000001: "4F21B565BAD9835E112B6465635EAE44",
    0x00000002: "2F34D68DE10F68D38091A73B9E7C437C",
    0x00000003: "031504E530365CF81264238540518318",
    0x00000004: "0EEFC7ADA628BA68878DA9165A8A1887",
    0x00000005: "C2A7AC328A5DA2D6002D62465BFC028B",
    0x00000006: "D30F7D9351DA58448A2F5E92B4EE3B7D",
    0x00000007: "A8253CEED9AC042C54F75D35C8352278",
    0x00000008: "718EE6CF0B27E53D5F7AF99C4D8146A2",
    0x0001FFFE: "E21E8C8D347F8561A2BE752DAA85A111",
    0x00020000: "F7AE9025468A25D37B7249CFFED224C8",
    0x00020001: "692C8EA4013645135B36497131DF9D2C",
    0xFFFE2000: "48E585B694EB0B18D5C35443E163C0BA",
    0xFFFE4000: "396C2C7CA1EA701C03B86B7D41F0C562",
    0xFFFE8000: "0387625F189B58AE03EF0E8CCA41105E",
    0xFFFF0000: "F6BA59389BD14A9855BE9727E7C52E3C",
}

# Supplement, AES-128 BDK: AES-128 PIN encryption working keys.
PIN_KEYS = {
    0x00000001: "AF8CB133A78F8DC2D1359F18527593FB",
    0x00000002: "D30BDC73EC9714B000BEC66BDB7B6D09",
    0x00000003: "7D69F01F3B45449F62C7816ECE723268",
    0x00000008: "4D9DF3FBEE3448FC3E676D04320A90F5",
    0x00020000: "AB828BE7B58C7EC5D5ED0D5D320A0C9D",
    0x00845FED: "D1DDA386AA4A556AF0119FDCB5D132C6",   # 8675309, the supplement's mid-range counter
    0xFFFE4000: "6239A27F572DEDB17BCA1AC413EF9FE9",
    0xFFFE8000: "F10C1404137A80718FCCE8BD90FF9F67",
    0xFFFF0000: "27EFAC1D158632588F4AC69E45C247C4",
}

# Supplement / Annex B, counter 1: every AES-128 working key usage.
COUNTER_1_USAGES = {
    "key_encryption": "36A724B7BEFA5A25F5E7B5782A4554A2",
    "pin_encryption": "AF8CB133A78F8DC2D1359F18527593FB",
    "mac_generation": "A2DC23DE6FDE0824A2BC321E08E4B8B7",
    "mac_verification": "DBB463945B286C07CD3AD82EE96FD9C9",
    "mac_both": "85675439D18D7F1158BD8E3EAA3D502B",
    "data_encryption_encrypt": "A35C412EFD41FDB98B69797C02DCD08F",
    "data_encryption_decrypt": "16292C6EA8F64C5420A0584BFBC577BE",
    "data_encryption_both": "A308E080DD15A1B741F1721BF67DE11C",
}


def test_initial_key_from_bdk() -> None:
    assert derive_initial_key(BDK, IKID) == IK
    assert derive_initial_key(BDK, IKID, "AES128") == IK
    assert derive_initial_key(BDK256, IKID) == IK256


def test_derivation_data_layout() -> None:
    # X9.24-3-2017 Annex B: the initial key's derivation data, and the PIN key's for counter 1.
    assert DerivationData.for_initial_key(IKID, "AES128").block(1).hex().upper() == \
        "01018001000200801234567890123456"
    assert DerivationData.for_counter(0x1000, "AES128", IKID, 1).block(1).hex().upper() == \
        "01011000000200809012345600000001"
    assert DerivationData.for_counter(0x1000, "AES256", IKID, 1).block(2).hex().upper() == \
        "01021000000401009012345600000001"


@pytest.mark.parametrize(("counter", "expected"), INTERMEDIATE.items(), ids=[hex(c) for c in INTERMEDIATE])
def test_intermediate_derivation_keys(counter: int, expected: str) -> None:
    assert derive_intermediate_key(IK, ksn(counter)).hex().upper() == expected


@pytest.mark.parametrize(("counter", "expected"), PIN_KEYS.items(), ids=[hex(c) for c in PIN_KEYS])
def test_pin_encryption_keys(counter: int, expected: str) -> None:
    assert derive_working_key(IK, ksn(counter), "pin_encryption").hex().upper() == expected
    assert host_derive_working_key(BDK, ksn(counter), "pin_encryption", "AES128").hex().upper() == expected


@pytest.mark.parametrize(("usage", "expected"), COUNTER_1_USAGES.items())
def test_counter_1_key_usages(usage: str, expected: str) -> None:
    assert derive_working_key(IK, ksn(1), usage, "AES128").hex().upper() == expected


def test_other_working_key_types_counter_1() -> None:
    # Supplement: AES-256 from the AES-256 BDK; 2TDEA and 3TDEA from the AES-128 BDK.
    assert derive_working_key(IK256, ksn(1), "pin_encryption").hex().upper() == \
        "8C1AB7BEE973829E30242E0BBBDD4946D540C98FC1B5BDCF94790001A23FD502"
    assert derive_working_key(IK, ksn(1), "pin_encryption", "TDEA2").hex().upper() == \
        "630C706D9546E47D4449313F61C4D4AB"
    assert derive_working_key(IK, ksn(1), "pin_encryption", "3TDEA").hex().upper() == \
        "EA8B3F37EB9B15831167EF2977FD8762D9B5913F35766F6A"


def test_published_format_4_pin_block_decrypts_with_host_key() -> None:
    # Supplement format 4 example: PIN 1234, PAN 4111111111111111, PIN key of counter 1.
    key = host_derive_working_key(BDK, ksn(1), "pin_encryption")
    block = bytes.fromhex("A912150391AB65A67E52883D81CE2D15")
    assert decipher_pinblock_iso_4(key, block, "4111111111111111") == "1234"


def test_terminal_first_transactions_match_supplement() -> None:
    device = TerminalDukpt(IK, IKID)
    for counter in range(1, 9):
        got_ksn, key = device.next_transaction()
        assert got_ksn == ksn(counter)
        if counter in PIN_KEYS:
            assert key.hex().upper() == PIN_KEYS[counter]


def test_terminal_pin_block_decrypts_on_host() -> None:
    device = TerminalDukpt(IK, IKID)
    pan = "7077001000000019"
    for _ in range(3):
        got_ksn, pin_key = device.next_transaction()
        block = encipher_pinblock_iso_4(pin_key, "4321", pan)
        host_key = host_derive_working_key(BDK, got_ksn, "pin_encryption", "AES128")
        assert decipher_pinblock_iso_4(host_key, block, pan) == "4321"


valid_counters = st.integers(1, 0xFFFF0000).filter(lambda c: c.bit_count() <= 16)


@settings(max_examples=40, deadline=None)
@given(start=valid_counters, steps=st.integers(1, 20),
       key_type=st.sampled_from(["AES128", "TDEA2", "TDEA3"]),
       usage=st.sampled_from(["pin_encryption", "mac_generation", "data_encryption_both"]))
def test_terminal_agrees_with_host(start: int, steps: int, key_type: str, usage: str) -> None:
    device = TerminalDukpt(IK, IKID, key_type, counter=start)
    previous = 0
    for _ in range(steps):
        if device.exhausted:
            break
        got_ksn, key = device.next_transaction(usage)
        counter = int.from_bytes(got_ksn[8:], "big")
        assert counter > previous and counter.bit_count() <= 16
        previous = counter
        assert key == host_derive_working_key(BDK, got_ksn, usage, key_type)


def test_terminal_uses_every_valid_counter_in_order() -> None:
    device = TerminalDukpt(IK, IKID)
    used = [int.from_bytes(device.next_transaction()[0][8:], "big") for _ in range(3000)]
    assert used == list(range(1, 3001))


def test_counter_with_17_one_bits_is_skipped() -> None:
    device = TerminalDukpt(IK, IKID, counter=0x1FFFE)
    first, second = device.next_transaction(), device.next_transaction()
    assert first[0] == ksn(0x1FFFE)
    assert second == (ksn(0x20000), bytes.fromhex(PIN_KEYS[0x20000]))
    assert device.counter == 0x20001
    with pytest.raises(DukptKeyError):
        derive_working_key(IK, ksn(0x1FFFF), "pin_encryption")


@pytest.mark.slow
def test_terminal_from_first_counter_skips_0x1ffff() -> None:
    # 131 073 transactions from a fresh load: the device reaches the first skipped counter on its own.
    device = TerminalDukpt(IK, IKID)
    for _ in range(0x1FFFD):
        device.next_transaction()
    assert device.next_transaction()[0] == ksn(0x1FFFE)
    assert device.next_transaction() == (ksn(0x20000), bytes.fromhex(PIN_KEYS[0x20000]))


def test_exhaustion_after_last_counter() -> None:
    device = TerminalDukpt(IK, IKID, counter=0xFFFE2000)
    counters = [int.from_bytes(device.next_transaction()[0][8:], "big") for _ in range(4)]
    assert counters == [0xFFFE2000, 0xFFFE4000, 0xFFFE8000, 0xFFFF0000]
    assert device.exhausted
    with pytest.raises(DukptExhaustedError) as raised:
        device.next_transaction()
    assert isinstance(raised.value, PinPadError) and not isinstance(raised.value, ValueError)


def test_used_keys_are_wiped() -> None:
    device = TerminalDukpt(IK, IKID)
    registers = device._registers._registers       # white-box: the bytearrays the device holds
    first = registers[0]
    assert first is not None and any(first)
    device.next_transaction()
    assert not any(first) and registers[0] is None
    live = [r for r in registers if r is not None]
    device.wipe()
    assert all(not any(r) for r in live) and device.exhausted
    with pytest.raises(DukptExhaustedError):
        device.next_transaction()


def test_bad_usage_does_not_consume_a_counter() -> None:
    device = TerminalDukpt(IK, IKID)
    with pytest.raises(DukptKeyError):
        device.next_transaction("pin")
    assert device.next_transaction()[0] == ksn(1)


@pytest.mark.parametrize("call", [
    lambda: derive_initial_key(BDK[:15], IKID),
    lambda: derive_initial_key(BDK, IKID[:7]),
    lambda: derive_initial_key(BDK, IKID, "AES256"),
    lambda: derive_initial_key(BDK, IKID, "AES512"),
    lambda: derive_working_key(IK, ksn(1)[:10], "pin_encryption"),
    lambda: derive_working_key(IK[:8], ksn(1), "pin_encryption"),
    lambda: derive_working_key(IK, ksn(0), "pin_encryption"),
    lambda: derive_working_key(IK, ksn(1), "pin_encryption", "AES256"),   # stronger than the initial key
    lambda: derive_working_key(IK, ksn(1), "pin"),
    lambda: host_derive_working_key(BDK, ksn(1) + b"\0", "pin_encryption"),
    lambda: TerminalDukpt(IK, IKID[:4]),
    lambda: TerminalDukpt(IK, IKID, counter=0),
    lambda: TerminalDukpt(IK, IKID, counter=0x1FFFF),
    lambda: TerminalDukpt(IK, IKID, "AES192"),
])
def test_malformed_input_raises_typed_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(DukptKeyError) as raised:
        call()
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, DukptError)
    assert isinstance(raised.value, PinPadError)
