"""firmware.emv.oda / certs: SDA, DDA and CDA against a test PKI built here, per EMV 4.4 Book 2
(tables 6, 7, 14, 17); every failure is a TVR bit, never an exception."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.emv.data import DataStore, TsiBit, TvrBit
from firmware.emv.oda import choose_method, perform_oda, pin_encipherment_key, verify_cda
from firmware.tlv import encode as t

TODAY = dt.date(2025, 6, 15)
PAN = "4761739001010010"
AID = bytes.fromhex("A0000000031010")
UN = bytes.fromhex("CAFEBABE")
CAPS = bytes.fromhex("60D8C8")


@dataclass(frozen=True)
class Key:
    n: int
    e: int
    d: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def sign(self, block: bytes) -> bytes:
        return pow(int.from_bytes(block, "big"), self.d, self.n).to_bytes(self.size, "big")


def make_key(bits: int) -> Key:
    numbers = rsa.generate_private_key(public_exponent=3, key_size=bits).private_numbers()
    return Key(numbers.public_numbers.n, 3, numbers.d)


CA, ISSUER, ICC = make_key(1152), make_key(1024), make_key(1024)
CA_KEYS = {("A000000003", 0x92): (CA.n, CA.e)}


def framed(signer: Key, fields: bytes, hashed_after: bytes, *, header: int = 0x6A,
           trailer: int = 0xBC) -> bytes:
    """Book 2 A2.1: header | fields | SHA-1(fields + data not in the block) | trailer, signed raw."""
    digest = hashlib.sha1(fields + hashed_after).digest()
    return signer.sign(bytes([header]) + fields + digest + bytes([trailer]))


def split(key: Key, room: int) -> tuple[bytes, bytes]:
    modulus = key.n.to_bytes(key.size, "big")
    return (modulus[:room], modulus[room:]) if len(modulus) > room else (modulus.ljust(room, b"\xbb"), b"")


def issuer_cert(*, issuer_id: str = "476173FF", expiry: str = "1230", fmt: int = 0x02,
                header: int = 0x6A, corrupt_hash: bool = False) -> tuple[bytes, bytes]:
    """Table 6; returns (90, 92)."""
    in_cert, remainder = split(ISSUER, CA.size - 36)
    fields = (bytes([fmt]) + bytes.fromhex(issuer_id + expiry) + b"\x00\x00\x01" + b"\x01\x01"
              + bytes([ISSUER.size, 1]) + in_cert)
    return framed(CA, fields, remainder + b"\x03" + (b"x" if corrupt_hash else b""), header=header), remainder


def icc_cert(static: bytes, *, pan: str = PAN, expiry: str = "1230") -> tuple[bytes, bytes]:
    """Table 14; returns (9F46, 9F48)."""
    in_cert, remainder = split(ICC, ISSUER.size - 42)
    fields = (b"\x04" + bytes.fromhex(pan.ljust(20, "F") + expiry) + b"\x00\x00\x02" + b"\x01\x01"
              + bytes([ICC.size, 1]) + in_cert)
    return framed(ISSUER, fields, remainder + b"\x03" + static), remainder


def ssad(static: bytes) -> bytes:
    """Table 7: format 03, hash algorithm, Data Authentication Code, pad BB."""
    return framed(ISSUER, b"\x03\x01" + b"\xda\xc1" + b"\xbb" * (ISSUER.size - 26), static)


def sdad(dynamic: bytes, terminal_data: bytes) -> bytes:
    """Table 17: format 05, hash algorithm, Ld, ICC dynamic data, pad BB."""
    fields = b"\x05\x01" + bytes([len(dynamic)]) + dynamic + b"\xbb" * (ICC.size - len(dynamic) - 25)
    return framed(ICC, fields, terminal_data)


RECORDS = t(0x5A, bytes.fromhex(PAN)) + t(0x5F24, bytes.fromhex("301231"))


def card_store(aip: str, *, static: bytes = RECORDS + bytes.fromhex("3800"), index: int = 0x92,
               issuer: tuple[bytes, bytes] | None = None, icc: bool = True) -> DataStore:
    store = DataStore()
    store.set(0x9F37, UN)
    for tag, value in {0x82: bytes.fromhex(aip), 0x5A: bytes.fromhex(PAN), 0x8F: bytes([index]),
                       0x9F32: b"\x03", 0x9F4A: b"\x82", 0x9F47: b"\x03"}.items():
        store.set_from_card(tag, value)
    cert, remainder = issuer or issuer_cert()
    store.set_from_card(0x90, cert)
    store.set_from_card(0x92, remainder)
    store.set_from_card(0x93, ssad(static))
    if icc:
        icert, iremainder = icc_cert(static)
        store.set_from_card(0x9F46, icert)
        store.set_from_card(0x9F48, iremainder)
    return store


class Replay:
    def __init__(self, script: list[tuple[str, bytes]]) -> None:
        self.script, self.sent = list(script), []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        expected, response = self.script.pop(0)
        assert apdu.hex().upper().startswith(expected), apdu.hex()
        return response


def oda(store: DataStore, reader: Replay | None = None,
        records: bytes | None = RECORDS) -> tuple[DataStore, str]:
    state = perform_oda(reader or Replay([]), store, CA_KEYS, AID, records, CAPS, bytes.fromhex("9F3704"),
                        TODAY)
    return store, state.reason


def failed(store: DataStore) -> list[str]:
    return [b.name for b in (TvrBit.ODA_NOT_PERFORMED, TvrBit.SDA_FAILED, TvrBit.ICC_DATA_MISSING,
                             TvrBit.DDA_FAILED, TvrBit.CDA_FAILED) if b in store.tvr]


def test_choose_method_prefers_cda_then_dda_then_sda() -> None:
    assert choose_method(bytes.fromhex("6100"), CAPS) == "cda"
    assert choose_method(bytes.fromhex("6000"), CAPS) == "dda"
    assert choose_method(bytes.fromhex("4000"), CAPS) == "sda"
    assert choose_method(bytes.fromhex("6100"), bytes.fromhex("60D800")) == "none"


def test_sda_good_chain() -> None:
    store, reason = oda(card_store("4000", static=RECORDS + bytes.fromhex("4000")))
    assert failed(store) == [] and reason == ""
    assert TsiBit.ODA_PERFORMED in store.tsi and TvrBit.SDA_SELECTED in store.tvr
    assert store.get(0x9F45) == b"\xda\xc1"


def test_sda_wrong_static_data_hash() -> None:
    store, _ = oda(card_store("4000"), records=RECORDS + b"\x00")   # a record changed after signing
    assert failed(store) == ["SDA_FAILED"]


def test_no_common_method_sets_oda_not_performed() -> None:
    store, _ = oda(card_store("1800"))
    assert failed(store) == ["ODA_NOT_PERFORMED"] and TsiBit.ODA_PERFORMED not in store.tsi


def test_dda_good_chain_with_internal_authenticate() -> None:
    static = RECORDS + bytes.fromhex("2000")
    reader = Replay([("0088000004CAFEBABE00", t(0x80, sdad(b"\x04\x01\x02\x03\x04", UN)) + b"\x90\x00")])
    store, reason = oda(card_store("2000", static=static), reader)
    assert failed(store) == [] and reason == "" and store.get(0x9F4C) == b"\x01\x02\x03\x04"


def test_dda_bad_signature_and_refused_command() -> None:
    reader = Replay([("00880000", t(0x80, sdad(b"\x02\x01\x02", b"other")) + b"\x90\x00")])
    store, _ = oda(card_store("2000", static=RECORDS + bytes.fromhex("2000")), reader)
    assert failed(store) == ["DDA_FAILED"]
    reader = Replay([("00880000", b"\x69\x85")])
    store, _ = oda(card_store("2000", static=RECORDS + bytes.fromhex("2000")), reader)
    assert failed(store) == ["DDA_FAILED"]


@pytest.mark.parametrize(("issuer", "why"), [
    (issuer_cert(corrupt_hash=True), "hash"),
    (issuer_cert(header=0x6B), "header"),
    (issuer_cert(fmt=0x03), "format"),
    (issuer_cert(expiry="0524"), "expired"),
    (issuer_cert(issuer_id="541333FF"), "identifier"),
])
def test_bad_issuer_certificate_sets_the_method_failed_bit(issuer: tuple[bytes, bytes], why: str) -> None:
    store, _ = oda(card_store("4000", issuer=issuer))
    assert failed(store) == ["SDA_FAILED"], why
    store, _ = oda(card_store("0100", issuer=issuer))
    assert failed(store) == ["CDA_FAILED"], why


def test_wrong_trailer_is_detected() -> None:
    in_cert, remainder = split(ISSUER, CA.size - 36)
    fields = (b"\x02" + bytes.fromhex("476173FF1230") + b"\x00\x00\x01\x01\x01" + bytes([ISSUER.size, 1])
              + in_cert)
    bad = framed(CA, fields, remainder + b"\x03", trailer=0xBD)
    store, reason = oda(card_store("2000", issuer=(bad, remainder)))
    assert failed(store) == ["DDA_FAILED"] and "trailer" in reason


def test_unknown_ca_index_and_missing_data() -> None:
    store, reason = oda(card_store("2000", index=0x99))
    assert failed(store) == ["DDA_FAILED"] and "no CA public key" in reason
    store = card_store("2000", icc=False)
    store, _ = oda(store)
    assert failed(store) == ["ICC_DATA_MISSING", "DDA_FAILED"]


def test_tag_list_with_other_than_82_fails() -> None:
    store = card_store("4000")
    store.set(0x9F4A, b"\x9f\x07")
    store, _ = oda(store)
    assert failed(store) == ["SDA_FAILED"]


def test_flagged_record_not_usable_fails() -> None:
    store, _ = oda(card_store("4000"), records=None)
    assert failed(store) == ["SDA_FAILED"]


def cda_answer(cid: int, ac: bytes, dol_data: bytes, *,
               sig_cid: int | None = None) -> list[tuple[int, bytes]]:
    head = [(0x9F27, bytes([cid])), (0x9F36, b"\x00\x11")]
    tail = [(0x9F10, bytes.fromhex("0110A00000"))]
    response = b"".join(t(tag, v) for tag, v in head + tail)
    tdhc = hashlib.sha1(dol_data + response).digest()
    dynamic = b"\x02\xab\xcd" + bytes([cid if sig_cid is None else sig_cid]) + ac + tdhc
    return head + [(0x9F4B, sdad(dynamic, UN))] + tail


def test_cda_good_and_tampered() -> None:
    static = RECORDS + bytes.fromhex("0100")
    store = card_store("0100", static=static)
    state = perform_oda(Replay([]), store, CA_KEYS, AID, RECORDS, CAPS, b"", TODAY)
    assert state.cda_ready and failed(store) == []
    ac = bytes(range(8))
    assert verify_cda(store, state, cda_answer(0x80, ac, b"pdol+cdol1"), b"pdol+cdol1") == ac
    assert store.get(0x9F4C) == b"\xab\xcd"
    assert verify_cda(store, state, cda_answer(0x80, ac, b"pdol+cdol1"), b"other data") is None
    assert failed(store) == ["CDA_FAILED"]
    store = card_store("0100", static=static)
    state = perform_oda(Replay([]), store, CA_KEYS, AID, RECORDS, CAPS, b"", TODAY)
    assert verify_cda(store, state, cda_answer(0x80, ac, b"d", sig_cid=0x40), b"d") is None
    assert failed(store) == ["CDA_FAILED"]


def test_pin_encipherment_key_falls_back_to_icc_key() -> None:
    store = card_store("6000", static=RECORDS + bytes.fromhex("6000"))
    state = perform_oda(Replay([]), store, CA_KEYS, AID, RECORDS, bytes.fromhex("60D880"), b"", TODAY)
    assert state.method == "sda" and failed(store) == [] and state.icc_key is None
    key = pin_encipherment_key(store, state, CA_KEYS, AID, TODAY)
    assert key is not None and key.modulus == ICC.n


@settings(max_examples=60, deadline=None)
@given(tag=st.sampled_from([0x90, 0x92, 0x9F32, 0x93, 0x9F46, 0x9F47, 0x9F48, 0x8F, 0x9F4A]),
       value=st.binary(max_size=300), method=st.sampled_from(["4000", "2000", "0100"]))
def test_garbage_in_any_oda_object_is_a_tvr_bit(tag: int, value: bytes, method: str) -> None:
    store = card_store(method)
    store.set(tag, value)
    reader = Replay([("00880000", t(0x80, value) + b"\x90\x00")])
    oda(store, reader)
    assert TsiBit.ODA_PERFORMED in store.tsi
