"""The fleet card applet's APDU behaviour, through MemoryReader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import CardRemoved, ConfigError
from drivers.cardreader import MemoryReader, open_reader
from hostsim.cards import FLEET_AID, BlankCard, FleetCard, HostileCard

PAN = "7083123456789012345"
SELECT = bytes.fromhex("00A4040008") + FLEET_AID + b"\x00"
READ_SFI1_REC1 = bytes.fromhex("00B2010C00")


@pytest.fixture
def reader() -> MemoryReader:
    r = MemoryReader(FleetCard(PAN, "2712", "J DRIVER"))
    r.connect()
    return r


def test_select_returns_fci(reader: MemoryReader) -> None:
    assert reader.transmit(SELECT) == bytes.fromhex(
        "6F1D" "8408F0464F5245464C54" "A511" "500F") + b"FORECOURT FLEET" + b"\x90\x00"


def test_read_record_after_select(reader: MemoryReader) -> None:
    reader.transmit(SELECT)
    assert reader.transmit(READ_SFI1_REC1) == (
        bytes.fromhex("701D" "5A0A7083123456789012345F" "5F2403271231" "5F2008") + b"J DRIVER" + b"\x90\x00")


def test_expiry_is_last_day_of_month_even_pan_unpadded() -> None:
    r = MemoryReader(FleetCard("708312345678", "2802", "AB"))
    r.connect()
    r.transmit(SELECT)
    record = r.transmit(READ_SFI1_REC1)
    assert bytes.fromhex("5A06708312345678") in record
    assert bytes.fromhex("5F2403280229") in record   # 2028 is a leap year


@pytest.mark.parametrize(("apdu", "sw"), [
    (bytes.fromhex("00A4040008F0464F5245464C5500"), "6A82"),   # wrong AID
    (bytes.fromhex("00B2020C00"), "6A83"),                     # record 2 (after a select below)
    (bytes.fromhex("00B2011400"), "6A83"),                     # SFI 2
    (bytes.fromhex("00CA9F1700"), "6D00"),                     # unknown INS
    (bytes.fromhex("80A4040008") + FLEET_AID + b"\x00", "6E00"),  # unknown CLA
])
def test_error_status_words(reader: MemoryReader, apdu: bytes, sw: str) -> None:
    reader.transmit(SELECT)
    assert reader.transmit(apdu) == bytes.fromhex(sw)


def test_read_before_select_is_6985(reader: MemoryReader) -> None:
    assert reader.transmit(READ_SFI1_REC1) == bytes.fromhex("6985")


def test_power_cycle_deselects(reader: MemoryReader) -> None:
    reader.transmit(SELECT)
    reader.disconnect()
    reader.connect()
    assert reader.transmit(READ_SFI1_REC1) == bytes.fromhex("6985")


def test_wrong_aid_deselects(reader: MemoryReader) -> None:
    reader.transmit(SELECT)
    reader.transmit(bytes.fromhex("00A4040008F0464F5245464C5500"))
    assert reader.transmit(READ_SFI1_REC1) == bytes.fromhex("6985")


def test_atr_is_well_formed() -> None:
    atr = FleetCard(PAN, "2712", "J DRIVER").atr
    tck = 0
    for byte in atr[1:]:
        tck ^= byte
    assert atr[0] == 0x3B and tck == 0


def test_repr_and_errors_hide_pan() -> None:
    assert PAN not in repr(FleetCard(PAN, "2712", "J DRIVER"))
    with pytest.raises(ConfigError) as info:
        FleetCard(PAN + "12345", "2712", "J DRIVER")
    assert PAN not in str(info.value)
    with pytest.raises(ConfigError):
        FleetCard(PAN, "2713", "J DRIVER")


def test_blank_card_refuses_every_select() -> None:
    r = MemoryReader(BlankCard())
    r.connect()
    assert r.transmit(SELECT) == bytes.fromhex("6A82")
    assert r.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100")) == bytes.fromhex("6A82")


def test_hostile_card_replays_script_then_6f00() -> None:
    card = HostileCard([b"\x6f\xff\xff\x90\x00", b"\x90"])
    r = MemoryReader(card)
    r.connect()
    assert r.transmit(SELECT) == b"\x6f\xff\xff\x90\x00"
    assert card._responses[1] == b"\x90"
    assert card.apdu(READ_SFI1_REC1) == b"\x90"
    assert r.transmit(READ_SFI1_REC1) == b"\x6f\x00"
    assert card.commands[0] == SELECT


def test_get_response_and_6c_reissue() -> None:
    card = HostileCard([b"\x61\x03", b"\xaa\xbb\xcc\x61\x01", b"\xdd\x90\x00", b"\x6c\x04",
                        b"\x01\x02\x03\x04\x90\x00"])
    r = MemoryReader(card)
    r.connect()
    assert r.transmit(SELECT) == b"\xaa\xbb\xcc\xdd\x90\x00"
    assert card.commands[1] == bytes.fromhex("00C0000003")
    assert card.commands[2] == bytes.fromhex("00C0000001")
    assert r.transmit(bytes.fromhex("00B2010C00")) == b"\x01\x02\x03\x04\x90\x00"
    assert card.commands[4] == bytes.fromhex("00B2010C04")


def test_removal_raises_card_removed() -> None:
    r = MemoryReader(FleetCard(PAN, "2712", "J DRIVER"))
    r.connect()
    r.remove()
    assert not r.card_present()
    assert r.wait_for_removal(0)
    with pytest.raises(CardRemoved):
        r.transmit(SELECT)
    r.insert(FleetCard(PAN, "2712", "J DRIVER"))
    with pytest.raises(CardRemoved):       # a new card needs a new connect()
        r.transmit(SELECT)
    assert r.wait_for_card(0)
    r.connect()
    assert r.transmit(SELECT).endswith(b"\x90\x00")


def test_open_reader_schemes() -> None:
    assert isinstance(open_reader("memory://"), MemoryReader)
    with pytest.raises(ConfigError):
        open_reader("usb://reader")
    assert open_reader("pcsc://Forecourt%20Virtual%20PCD%2000%2000").reader_name == (  # type: ignore[attr-defined]
        "Forecourt Virtual PCD 00 00")


@given(st.binary(max_size=64))
def test_any_apdu_gets_a_status_word(apdu: bytes) -> None:
    response = FleetCard(PAN, "2712", "J DRIVER").apdu(apdu)
    assert len(response) >= 2
