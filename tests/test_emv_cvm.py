"""firmware.emv.cvm: CVM list processing for an unattended terminal (Book 3 10.5, Annex C3; Book 2 7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from firmware.emv.certs import PublicKey
from firmware.emv.cvm import PinInput, perform_cvm
from firmware.emv.data import DataStore, TsiBit, TvrBit
from firmware.tlv import encode as t

CAPS = bytes.fromhex("60D8C8")
OK = b"\x90\x00"


class Replay:
    def __init__(self, script: list[tuple[str, bytes]]) -> None:
        self.script, self.sent = list(script), []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        expected, response = self.script.pop(0)
        assert apdu.hex().upper().startswith(expected), apdu.hex()
        return response


class Block:
    def __init__(self) -> None:
        self.given: list[bytearray] = []

    def plain_pin_block_for_card(self) -> bytearray:
        self.given.append(bytearray.fromhex("241234FFFFFFFFFF"))
        return self.given[-1]


def store_with(cvm_list: str, aip: str = "1000", amount_currency: str = "0978") -> DataStore:
    store = DataStore()
    store.set(0x82, bytes.fromhex(aip))
    store.set(0x8E, bytes.fromhex(cvm_list.replace(" ", "")))
    store.set(0x9F42, bytes.fromhex("0978"))
    store.set(0x5F2A, bytes.fromhex(amount_currency))
    store.set(0x9C, b"\x00")
    return store


def entry(*inputs: PinInput) -> tuple[Callable[[str, int | None, str], PinInput],
                                      list[tuple[str, int | None]]]:
    calls: list[tuple[str, int | None]] = []
    queue = list(inputs)

    def pin_entry(kind: str, tries: int | None, pan: str) -> PinInput:
        calls.append((kind, tries))
        return queue.pop(0)
    return pin_entry, calls


def run(store: DataStore, reader: Replay, pin_entry: Callable[[str, int | None, str], PinInput],
        amount: int = 5000, key: PublicKey | None = None, caps: bytes = CAPS) -> bytes:
    return perform_cvm(reader, store, amount, pin_entry, caps, 0x25, lambda: key).results


def test_online_pin() -> None:
    store = store_with("00000000 00000000 4203 1F03")
    pin_entry, calls = entry(PinInput(online_block=b"\x99" * 8))
    outcome = perform_cvm(Replay([]), store, 5000, pin_entry, CAPS, 0x25, lambda: None)
    assert outcome.results.hex() == "420300" and outcome.online_pin_block == b"\x99" * 8
    assert calls == [("online", None)]
    assert TvrBit.ONLINE_PIN_ENTERED in store.tvr and TsiBit.CARDHOLDER_VERIFICATION_PERFORMED in store.tsi
    assert store.get(0x9F34) == bytes.fromhex("420300")


def test_online_pin_bypassed_falls_to_no_cvm() -> None:
    store = store_with("00000000 00000000 4203 1F03")
    pin_entry, _ = entry(PinInput())
    assert run(store, Replay([]), pin_entry).hex() == "1f0302"
    assert TvrBit.PIN_REQUIRED_NOT_ENTERED in store.tvr


def test_signature_is_not_supported_here_so_cvm_fails() -> None:
    store = store_with("00000000 00000000 1E00")          # signature, always, b7 = 0: stop
    pin_entry, calls = entry()
    assert run(store, Replay([]), pin_entry).hex() == "1e0001"
    assert TvrBit.CARDHOLDER_VERIFICATION_NOT_SUCCESSFUL in store.tvr and calls == []


def test_condition_if_terminal_supports_skips_signature() -> None:
    store = store_with("00000000 00000000 1E03 1F03")
    assert run(store, Replay([]), entry()[0]).hex() == "1f0302"


def test_offline_plaintext_pin_wrong_then_right() -> None:
    store = store_with("00000000 00000000 0100")
    blocks = Block()
    pin_entry, calls = entry(PinInput(offline=blocks), PinInput(offline=blocks))
    reader = Replay([("80CA9F17", t(0x9F17, b"\x03") + OK), ("0020008008241234FFFFFFFFFF", b"\x63\xc2"),
                     ("0020008008", OK)])
    assert run(store, reader, pin_entry).hex() == "010002"
    assert calls == [("offline", 3), ("offline", 2)]
    assert all(not any(b) for b in blocks.given)          # wiped


def test_offline_pin_last_try_wrong_sets_try_limit_exceeded() -> None:
    store = store_with("00000000 00000000 4100 1F03")     # plaintext PIN, apply next; no CVM
    pin_entry, _ = entry(PinInput(offline=Block()))
    reader = Replay([("80CA9F17", t(0x9F17, b"\x01") + OK), ("00200080", b"\x63\xc0")])
    assert run(store, reader, pin_entry).hex() == "1f0302"
    assert TvrBit.PIN_TRY_LIMIT_EXCEEDED in store.tvr


def test_try_counter_zero_means_no_prompt() -> None:
    store = store_with("00000000 00000000 0100")
    pin_entry, calls = entry()
    assert run(store, Replay([("80CA9F17", t(0x9F17, b"\x00") + OK)]), pin_entry).hex() == "010001"
    assert calls == [] and TvrBit.PIN_TRY_LIMIT_EXCEEDED in store.tvr


@pytest.mark.parametrize("sw", [b"\x69\x83", b"\x69\x84"])
def test_blocked_pin(sw: bytes) -> None:
    store = store_with("00000000 00000000 0100")
    reader = Replay([("80CA9F17", b"\x6a\x88"), ("00200080", sw)])
    assert run(store, reader, entry(PinInput(offline=Block()))[0]).hex() == "010001"
    assert TvrBit.PIN_TRY_LIMIT_EXCEEDED in store.tvr


def test_offline_enciphered_pin() -> None:
    private = rsa.generate_private_key(public_exponent=3, key_size=1024)
    numbers = private.private_numbers()
    key = PublicKey(numbers.public_numbers.n, 3)
    store = store_with("00000000 00000000 0400")
    reader = Replay([("80CA9F17", t(0x9F17, b"\x03") + OK), ("0084000000", bytes(range(8)) + OK),
                     ("0020008880", OK)])
    assert run(store, reader, entry(PinInput(offline=Block()))[0], key=key).hex() == "040002"
    sent = int.from_bytes(reader.sent[-1][5:], "big")
    plain = pow(sent, numbers.d, key.modulus).to_bytes(128, "big")
    # Book 2 7.2: 7F | PIN block | ICC unpredictable number | random pad
    assert plain[:17] == b"\x7f" + bytes.fromhex("241234FFFFFFFFFF") + bytes(range(8))


def test_enciphered_pin_without_key_moves_on() -> None:
    store = store_with("00000000 00000000 4400 0200")
    pin_entry, calls = entry(PinInput(online_block=b"\x01" * 8))
    assert run(store, Replay([]), pin_entry).hex() == "020000"
    assert calls == [("online", None)]


@pytest.mark.parametrize(("cvm_list", "amount", "currency", "expected"), [
    ("00001000 00000000 4206 1F03", 4000, "0978", "420600"),      # under X in app currency
    ("00001000 00000000 4206 1F03", 5000, "0978", "1f0302"),      # not under X
    ("00001000 00000000 4207 1F03", 5000, "0978", "420700"),      # over X
    ("00001000 00000000 4207 1F03", 5000, "0840", "1f0302"),      # other currency: condition not met
    ("00000000 00002000 4208 1F03", 100, "0978", "420800"),       # under Y
    ("00000000 00002000 4209 1F03", 100, "0978", "1f0302"),       # not over Y
    ("00000000 00000000 4201 1F03", 100, "0978", "1f0302"),       # unattended cash: this is goods
    ("00000000 00000000 4202 1F03", 100, "0978", "420200"),       # not cash, not cashback
    ("00000000 00000000 4205 1F03", 100, "0978", "1f0302"),       # cashback: no
])
def test_conditions(cvm_list: str, amount: int, currency: str, expected: str) -> None:
    store = store_with(cvm_list, amount_currency=currency)
    pin_entry, _ = entry(PinInput(online_block=b"\x01" * 8))
    assert run(store, Replay([]), pin_entry, amount=amount).hex() == expected


def test_unrecognised_cvm_and_fail_cvm() -> None:
    store = store_with("00000000 00000000 5A00 1F00")      # 1A is RFU, b7 set
    assert run(store, Replay([]), entry()[0]).hex() == "1f0002"
    assert TvrBit.UNRECOGNISED_CVM in store.tvr
    store = store_with("00000000 00000000 0000 1F00")      # fail CVM processing, b7 clear
    assert run(store, Replay([]), entry()[0]).hex() == "000001"


def test_card_without_cvm_support_or_list() -> None:
    store = store_with("00000000 00000000 1F00", aip="0000")
    assert run(store, Replay([]), entry()[0]).hex() == "3f0000"
    assert TsiBit.CARDHOLDER_VERIFICATION_PERFORMED not in store.tsi
    store = store_with("00000000", aip="1000")
    assert run(store, Replay([]), entry()[0]).hex() == "3f0000"
    assert TvrBit.ICC_DATA_MISSING in store.tvr


def test_no_condition_satisfied() -> None:
    store = store_with("00000000 00000000 4205")
    assert run(store, Replay([]), entry()[0]).hex() == "3f0001"
    assert TvrBit.CARDHOLDER_VERIFICATION_NOT_SUCCESSFUL in store.tvr


def test_pin_input_repr_hides_blocks() -> None:
    assert "99" not in repr(PinInput(online_block=b"\x99" * 8))
