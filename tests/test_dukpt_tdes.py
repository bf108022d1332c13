"""drivers.pinpad.dukpt_tdes: TDES DUKPT (ANSI X9.24-1-2009) against the standard's Annex A.4 test data.

Vector source: ANSI X9.24-1-2009 A.4 "DUKPT Test Data Examples": BDK 0123456789ABCDEFFEDCBA9876543210,
initial KSN FFFF9876543210E00000, PIN 1234 with PAN 4012345678909. The hex values were taken from the
public transcription in openemv/dukpt test/dukpt_tdes_test.c (A.4.2 initial sequence, A.4.3 rollover
sequence), which agrees with the values quoted by moov-io/dukpt and others; no code was copied.

A.4 lists each KSN's transaction ("current") key and the PIN block encrypted under that key's PIN variant;
so 042666B49184CFA368DE9628D0397BC9 is counter 1's key *before* the variant, and its PIN key is
042666B49184CF5C68DE9628D0397B36.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from psec.pinblock import encode_pinblock_iso_0

from contracts.errors import PinPadError
from drivers.pinpad.dukpt_aes import DukptError, DukptExhaustedError, DukptKeyError
from drivers.pinpad.dukpt_tdes import (
    TdesTerminalDukpt,
    derive_initial_key,
    derive_pin_key,
    derive_transaction_key,
    host_derive_pin_key,
    pin_key_variant,
)

BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
INITIAL_KSN = bytes.fromhex("FFFF9876543210E00000")
IPEK = bytes.fromhex("6AC292FAA1315B4D858AB3A3D7D5933A")
CLEAR_PIN_BLOCK = bytes.fromhex("041274EDCBA9876F")     # A.4: ISO format 0, PIN 1234, PAN 4012345678909

# A.4.2 initial sequence, counters 1..21: (transaction key, encrypted PIN block).
INITIAL_SEQUENCE = [
    ("042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A"),
    ("C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107"),
    ("0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466"),
    ("279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7"),
    ("5F8DC6D2C845C125508DDC048093B83F", "5BC0AF22AD87B327"),
    ("5E415CB0BAF9F03CD0C14B63FB62FF43", "A16DF70AE36158D8"),
    ("0C8F780B7C8B49D0AE84A9EB2A6CE660", "27711C16CB257F8E"),
    ("27F66D5244FF62E1AA6F6120EDEB4280", "50E55547A5027551"),
    ("27E31064FDC565698900E2057F658E7E", "536CF7F678ACFC8D"),
    ("6CF2500A22507C7CC776CEADC1E33014", "EDABBA23221833FE"),
    ("3E8260BA04B2D620C01482B3819A18B7", "2328981C57B4BDBA"),
    ("B716E1E11CF53D80726CAEE75C3A624F", "038D03CC926CF286"),
    ("E072EDF95340535FB6C581C58FBF2533", "6C8AA97088B62C68"),
    ("A80046087F5B8F245AAD95E18429084F", "F17C9E1D72CD4950"),
    ("93DD5B956C4878472E453AAEFD32A5AA", "B170F6E7F7F2F64A"),
    ("59598DCBD9BD94C094165CE453585F57", "D5D9638559EF53D6"),
    ("2B5F01F4F0CC05EA639D523231BF1BA2", "D544F8CDD292C863"),
    ("9CF640F279C2AEE615F725EEEAC2CBAF", "7A21BD10F36DC41D"),
    ("C3DF489FDF1153B4F03DE97C27DC4C2F", "78649BD17D0DFA60"),
    ("658488507721B3F14737FA93F923CBD2", "7E7E16EA0C31AD56"),
    ("E161D1956A61F6D2F37AFD7F9CC3699A", "72105C22EBC791E6"),
]

# A.4.3 rollover sequence: the KSNs a device uses after FFFF9876543210EFF800, with the same columns.
ROLLOVER_SEQUENCE = [
    ("FFFF9876543210EFF800", "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35"),
    ("FFFF9876543210EFF801", "5BEE92627E97825C911BF619DF72CA3B", "3A86BF003F835C9D"),
    ("FFFF9876543210EFF802", "64CA2F8AB93F61B01620B00BF77C7301", "3DB977D05C36DF3F"),
    ("FFFF9876543210EFF804", "35A168695B3BA83307E871C42021DD37", "BA83243305712099"),
    ("FFFF9876543210EFF808", "12C380FCB72ED3C26FC6079AF63F4787", "B0DA04AC90A36D85"),
    ("FFFF9876543210EFF810", "D8007C833A1E3C49C6889B97A68C54FF", "2CF02BD9C309EEDA"),
    ("FFFF9876543210EFF820", "A9C9FF9B735FDD49591F296B0BF0FD70", "9D1E2F77AEEE81C6"),
    ("FFFF9876543210EFF840", "0E3E221062CB5E03A384602783A004FA", "40870B0F8BA2011C"),
    ("FFFF9876543210EFF880", "CA8225C587124DFBB87F279C0BE29727", "22E340D6ABB40981"),
    ("FFFF9876543210EFF900", "906AAC1751D4971A144D52C76C6E1F97", "1A4C10AFBA03A430"),
    ("FFFF9876543210EFFA00", "2B9E2CE7C2750337E10B54D2989EA6AF", "849763B43E5F9CFF"),
    ("FFFF9876543210EFFC00", "F9430DF975082491C77BE4EF4FDB91EE", "DEFC6F09F8927B71"),
    ("FFFF9876543210F00000", "AA4D58DB653EC74A48C75F2F047DD2B5", "73EC88AD0AC5830E"),
]


def ksn(counter: int) -> bytes:
    return (int.from_bytes(INITIAL_KSN, "big") | counter).to_bytes(10, "big")


def encrypt_pin_block(pin_key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(pin_key + pin_key[:8]), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def test_ipek() -> None:
    assert derive_initial_key(BDK, INITIAL_KSN) == IPEK
    assert derive_initial_key(BDK, ksn(8)) == IPEK          # the counter is cleared first


def test_clear_pin_block_is_the_published_one() -> None:
    assert encode_pinblock_iso_0("1234", "4012345678909") == CLEAR_PIN_BLOCK


@pytest.mark.parametrize(("counter", "transaction_key", "pin_block"),
                         [(i + 1, k, b) for i, (k, b) in enumerate(INITIAL_SEQUENCE)])
def test_initial_sequence(counter: int, transaction_key: str, pin_block: str) -> None:
    assert derive_transaction_key(IPEK, ksn(counter)).hex().upper() == transaction_key
    pin_key = host_derive_pin_key(BDK, ksn(counter))
    assert pin_key == pin_key_variant(bytes.fromhex(transaction_key)) == derive_pin_key(IPEK, ksn(counter))
    assert encrypt_pin_block(pin_key, CLEAR_PIN_BLOCK).hex().upper() == pin_block


def test_counter_1_pin_key() -> None:
    assert host_derive_pin_key(BDK, ksn(1)).hex().upper() == "042666B49184CF5C68DE9628D0397B36"


@pytest.mark.parametrize(("ksn_hex", "transaction_key", "pin_block"), ROLLOVER_SEQUENCE)
def test_rollover_sequence_host(ksn_hex: str, transaction_key: str, pin_block: str) -> None:
    pin_key = host_derive_pin_key(BDK, bytes.fromhex(ksn_hex))
    assert pin_key == pin_key_variant(bytes.fromhex(transaction_key))
    assert encrypt_pin_block(pin_key, CLEAR_PIN_BLOCK).hex().upper() == pin_block


def test_terminal_initial_sequence() -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN)
    for counter, (transaction_key, _) in enumerate(INITIAL_SEQUENCE, start=1):
        assert device.next_transaction() == (ksn(counter), pin_key_variant(bytes.fromhex(transaction_key)))


def test_terminal_rollover_skips_counters_with_more_than_10_one_bits() -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN, counter=0x0FF800)
    for ksn_hex, transaction_key, _ in ROLLOVER_SEQUENCE:
        assert device.next_transaction() == (bytes.fromhex(ksn_hex),
                                             pin_key_variant(bytes.fromhex(transaction_key)))


def test_terminal_uses_exactly_the_valid_counters_from_a_fresh_load() -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN)
    valid = [c for c in range(1, 0x1200) if c.bit_count() <= 10]     # 0x7FF, 0xBFF, ... are skipped
    used = [int.from_bytes(device.next_transaction()[0], "big") & 0x1FFFFF for _ in valid]
    assert used == valid and 0x7FF not in used


valid_counters = st.integers(1, 0x1FF800).filter(lambda c: c.bit_count() <= 10)


@settings(max_examples=40, deadline=None)
@given(start=valid_counters, steps=st.integers(1, 20))
def test_terminal_agrees_with_host(start: int, steps: int) -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN, counter=start)
    previous = 0
    for _ in range(steps):
        if device.exhausted:
            break
        got_ksn, pin_key = device.next_transaction()
        counter = int.from_bytes(got_ksn, "big") & 0x1FFFFF
        assert counter > previous and counter.bit_count() <= 10
        previous = counter
        assert pin_key == host_derive_pin_key(BDK, got_ksn)


def test_exhaustion_after_last_counter() -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN, counter=0x1FF800)    # the last usable counter
    assert device.next_transaction()[0] == ksn(0x1FF800)
    assert device.exhausted
    with pytest.raises(DukptExhaustedError) as raised:
        device.next_transaction()
    assert isinstance(raised.value, PinPadError) and not isinstance(raised.value, ValueError)


def test_used_keys_are_wiped() -> None:
    device = TdesTerminalDukpt(IPEK, INITIAL_KSN)
    registers = device._registers._registers       # white-box: the bytearrays the device holds
    first = registers[0]
    assert first is not None and any(first)
    device.next_transaction()
    assert not any(first) and registers[0] is None
    live = [r for r in registers if r is not None]
    device.wipe()
    assert all(not any(r) for r in live) and device.exhausted


@pytest.mark.parametrize("call", [
    lambda: derive_initial_key(BDK[:8], INITIAL_KSN),
    lambda: derive_initial_key(BDK + BDK[:8], INITIAL_KSN),
    lambda: derive_initial_key(BDK, INITIAL_KSN[:8]),
    lambda: derive_transaction_key(IPEK, INITIAL_KSN),                  # counter 0
    lambda: derive_transaction_key(IPEK, ksn(0x7FF)),                   # 11 one-bits
    lambda: derive_transaction_key(IPEK[:15], ksn(1)),
    lambda: host_derive_pin_key(BDK, ksn(1) + b"\0"),
    lambda: pin_key_variant(IPEK[:8]),
    lambda: TdesTerminalDukpt(IPEK, ksn(1)),                            # initial KSN must have counter 0
    lambda: TdesTerminalDukpt(IPEK, INITIAL_KSN, counter=0x200000),
    lambda: TdesTerminalDukpt(IPEK[:8], INITIAL_KSN),
])
def test_malformed_input_raises_typed_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(DukptKeyError) as raised:
        call()
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, DukptError)
