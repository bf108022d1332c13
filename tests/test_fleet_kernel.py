"""firmware.programs.fleet.card: the fleet card read sequence against a replaying fake card, and through
MemoryReader."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.cards import luhn_ok
from contracts.errors import CardError, CardNotAccepted, CardRemoved
from firmware.programs.fleet.card import (
    FLEET_AID,
    READ_RECORD_1,
    SELECT_FLEET,
    FleetCardData,
    read_fleet_card,
)
from firmware.tlv import encode as t

PAN = "7077001000000019"
OK = b"\x90\x00"


class Replay:
    """A pyscard-shaped connection: answers from a dict keyed by APDU, or a list in order."""

    def __init__(self, script: Mapping[bytes, bytes] | Sequence[bytes]) -> None:
        self.script = script
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        if isinstance(self.script, Mapping):
            return self.script.get(bytes(apdu), b"\x6d\x00")
        return self.script[len(self.sent) - 1]


def fci(aid: bytes = FLEET_AID) -> bytes:
    return t(0x6F, t(0x84, aid) + t(0xA5, t(0x50, b"FORECOURT FLEET")))


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


def record(pan: str = PAN, expiry: str = "291231", holder: bytes | None = b"ACME HAULAGE TRUCK 12",
           extra: bytes = b"") -> bytes:
    body = t(0x5A, bcd(pan)) + t(0x5F24, bytes.fromhex(expiry))
    if holder is not None:
        body += t(0x5F20, holder)
    return t(0x70, body + extra)


def card(select: bytes | None = None, read: bytes | None = None) -> Replay:
    return Replay({SELECT_FLEET: fci() + OK if select is None else select,
                   READ_RECORD_1: record() + OK if read is None else read})


def test_apdus_are_iso7816_select_by_name_and_read_record() -> None:
    # ISO/IEC 7816-4: SELECT (A4) by DF name (P1=04), first occurrence, Le=00;
    # READ RECORD (B2) record 1, P2 = SFI 1 << 3 | 4 ("P1 is a record number")
    assert SELECT_FLEET == bytes.fromhex("00A4040008F0464F5245464C5400")
    assert READ_RECORD_1 == bytes.fromhex("00B2010C00")


def test_happy_path() -> None:
    fake = card()
    data = read_fleet_card(fake)
    assert data == FleetCardData(pan=PAN, expiry="2912", holder="ACME HAULAGE TRUCK 12")
    assert fake.sent == [SELECT_FLEET, READ_RECORD_1]
    assert data.masked == "707700******0019"


def test_19_digit_pan_with_f_padding_and_a_list_script() -> None:
    pan = "7083123456789012346"
    fake = Replay([fci() + OK, record(pan=pan, expiry="271231", holder=b"J DRIVER") + OK])
    data = read_fleet_card(fake)
    assert (data.pan, data.expiry, data.holder) == (pan, "2712", "J DRIVER")


def test_holder_is_optional_trimmed_and_capped() -> None:
    assert read_fleet_card(card(read=record(holder=None) + OK)).holder == ""
    assert read_fleet_card(card(read=record(holder=b"  AB  ") + OK)).holder == "AB"
    assert read_fleet_card(card(read=record(holder=b"X" * 40) + OK)).holder == "X" * 26
    assert read_fleet_card(card(read=record(holder=b"\xffBAD") + OK)).holder == "\ufffdBAD"


def test_unknown_tags_in_the_record_are_ignored() -> None:
    data = read_fleet_card(card(read=record(extra=t(0x9F08, b"\x00\x02")) + OK))
    assert data.pan == PAN


def test_fci_may_carry_padding_and_more_templates() -> None:
    select = b"\x00" + t(0x6F, t(0xA5, t(0xBF0C, b"")) + t(0x84, FLEET_AID)) + b"\xff" + OK
    assert read_fleet_card(card(select=select)).pan == PAN


@pytest.mark.parametrize("sw", ["6A82", "6A81"])
def test_no_fleet_application_is_not_accepted(sw: str) -> None:
    fake = card(select=bytes.fromhex(sw))
    with pytest.raises(CardNotAccepted) as info:
        read_fleet_card(fake)
    assert info.value.context == {"sw": sw}
    assert fake.sent == [SELECT_FLEET]          # no READ RECORD after a failed SELECT


@pytest.mark.parametrize("sw", ["6985", "6700", "6F00", "6D00", "6E00", "6283", "9001"])
def test_other_select_status_is_a_card_error(sw: str) -> None:
    with pytest.raises(CardError) as info:
        read_fleet_card(card(select=fci() + bytes.fromhex(sw)))
    assert not isinstance(info.value, CardNotAccepted)
    assert info.value.context == {"sw": sw}


@pytest.mark.parametrize("sw", ["6A83", "6A82", "6985", "6B00"])
def test_read_record_status_is_a_card_error(sw: str) -> None:
    with pytest.raises(CardError, match="READ RECORD") as info:
        read_fleet_card(card(read=record() + bytes.fromhex(sw)))
    assert not isinstance(info.value, CardNotAccepted)
    assert info.value.context == {"sw": sw}


@pytest.mark.parametrize("select", [
    fci(aid=bytes.fromhex("A0000000031010")) + OK,      # a Visa AID answered
    fci(aid=FLEET_AID + b"\x01") + OK,                   # longer than ours
    fci(aid=FLEET_AID[:-1]) + OK,                        # a prefix of ours
    t(0x6F, t(0xA5, b"")) + OK,                          # no DF name at all
    OK,                                                  # no FCI at all
])
def test_wrong_aid_in_fci_is_not_accepted(select: bytes) -> None:
    fake = card(select=select)
    with pytest.raises(CardNotAccepted, match="another application"):
        read_fleet_card(fake)
    assert fake.sent == [SELECT_FLEET]


@pytest.mark.parametrize(("select", "read"), [
    (bytes.fromhex("6F05840AF046") + OK, None),                    # FCI value truncated
    (bytes.fromhex("9F") + OK, None),                              # FCI tag truncated
    (bytes.fromhex("6F80") + OK, None),                            # indefinite length
    (None, bytes.fromhex("7010") + t(0x5A, bcd(PAN)) + OK),        # record truncated
    (None, t(0x70, bytes.fromhex("5A08707700")) + OK),             # PAN inside the template truncated
    (None, t(0x70, bytes.fromhex("5F")) + OK),
])
def test_malformed_tlv_is_a_card_error(select: bytes | None, read: bytes | None) -> None:
    with pytest.raises(CardError, match="malformed data") as info:
        read_fleet_card(card(select=select, read=read))
    assert not isinstance(info.value, CardNotAccepted)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("read", [
    t(0x77, t(0x5A, bcd(PAN))) + OK,                         # not a 70 template
    record() + record() + OK,                                # two templates
    OK,                                                      # empty record
    t(0x5A, bcd(PAN)) + t(0x5F24, bytes.fromhex("291231")) + OK,   # fields without the template
])
def test_record_must_be_one_70_template(read: bytes) -> None:
    with pytest.raises(CardError, match="70 template"):
        read_fleet_card(card(read=read))


@pytest.mark.parametrize("pan", ["7077001000000018", "4111111111111112", "79927398710000"])
def test_bad_luhn_is_a_card_error(pan: str) -> None:
    with pytest.raises(CardError, match="check digit") as info:
        read_fleet_card(card(read=record(pan=pan) + OK))
    assert pan not in str(info.value)


@pytest.mark.parametrize("body", ["70830010000", "707700100000000000"])     # 12 and 19 digits
def test_shortest_and_longest_pan_lengths_are_read(body: str) -> None:
    pan = next(body + d for d in "0123456789" if luhn_ok(body + d))
    assert read_fleet_card(card(read=record(pan=pan) + OK)).pan == pan


@pytest.mark.parametrize("pan_raw", [
    bytes.fromhex("7077001000FF"),                  # 10 digits
    bytes.fromhex("70770010000F"),                  # 11 digits
    bytes.fromhex("70770010000000000000"),          # 20 digits
    bytes.fromhex("7077001A00000019"),              # a non-decimal nibble
    bytes.fromhex("7077F01000000019"),              # padding in the middle
    b"",
])
def test_malformed_pan_field_is_a_card_error(pan_raw: bytes) -> None:
    rec = t(0x70, t(0x5A, pan_raw) + t(0x5F24, bytes.fromhex("291231")))
    with pytest.raises(CardError, match="card number field is malformed"):
        read_fleet_card(card(read=rec + OK))


@pytest.mark.parametrize("expiry", ["291331", "290031", "299931", "2A1231"])
def test_bad_expiry_month_is_a_card_error(expiry: str) -> None:
    with pytest.raises(CardError, match="expiry date is malformed"):
        read_fleet_card(card(read=record(expiry=expiry) + OK))


@pytest.mark.parametrize("month", range(1, 13))
def test_every_real_month_is_accepted(month: int) -> None:
    assert read_fleet_card(card(read=record(expiry=f"30{month:02d}01") + OK)).expiry == f"30{month:02d}"


@pytest.mark.parametrize("body", [
    t(0x5F24, bytes.fromhex("291231")),                              # no PAN
    t(0x5A, bcd(PAN)),                                               # no expiry
    t(0x5A, bcd(PAN)) + t(0x5F24, bytes.fromhex("2912")),            # expiry of 2 bytes
    t(0x5A, bcd(PAN)) + t(0x5F24, bytes.fromhex("29123100")),        # expiry of 4 bytes
    t(0x5F20, b"HOLDER ONLY"),
    b"",
])
def test_missing_fields_are_a_card_error(body: bytes) -> None:
    with pytest.raises(CardError, match="lacks card number or expiry"):
        read_fleet_card(card(read=t(0x70, body) + OK))


@pytest.mark.parametrize("answer", [b"", b"\x90"])
def test_answer_shorter_than_a_status_word(answer: bytes) -> None:
    with pytest.raises(CardError, match="shorter than a status word") as info:
        read_fleet_card(card(select=answer))
    assert info.value.context == {"step": "select", "length": len(answer)}
    with pytest.raises(CardError, match="shorter than a status word") as info:
        read_fleet_card(card(read=answer))
    assert info.value.context == {"step": "read_record", "length": len(answer)}


def test_repr_never_shows_the_full_pan() -> None:
    data = read_fleet_card(card())
    for text in (repr(data), str(data), f"{data}", f"{data!r}", repr([data]), repr({"card": data})):
        assert PAN not in text
        assert "707700******0019" in text
    assert "ACME" not in repr(data)             # nor the holder name
    assert repr(data) == "FleetCardData(pan=707700******0019, expiry=2912)"


@pytest.mark.parametrize(("today", "expired"), [
    (dt.date(2029, 12, 31), False), (dt.date(2029, 1, 1), False), (dt.date(2025, 6, 1), False),
    (dt.date(2030, 1, 1), True), (dt.date(2031, 11, 15), True),
])
def test_expired_is_after_the_expiry_month(today: dt.date, expired: bool) -> None:
    assert FleetCardData(pan=PAN, expiry="2912", holder="").expired(today) is expired


@settings(max_examples=400, deadline=None)
@given(select=st.binary(max_size=40), read=st.binary(max_size=60))
def test_arbitrary_answers_give_card_data_or_card_error(select: bytes, read: bytes) -> None:
    try:
        data = read_fleet_card(card(select=select, read=read))
    except CardError:
        return
    assert len(data.pan) >= 12


@settings(max_examples=300, deadline=None)
@given(select=st.just(fci() + OK), read=st.binary(max_size=60).map(lambda b: t(0x70, b) + OK))
def test_arbitrary_template_content_gives_card_data_or_card_error(select: bytes, read: bytes) -> None:
    try:
        read_fleet_card(card(select=select, read=read))
    except CardError:
        pass


# -- through the simulated reader and the simulated fleet applet --------------------------------------------

hostsim_cards = pytest.importorskip("hostsim.cards")
memory = pytest.importorskip("drivers.cardreader.memory")


def _reader(sim_card: object) -> Any:
    r = memory.MemoryReader(sim_card)
    r.connect()
    return r


def test_fleet_card_through_memory_reader() -> None:
    r = _reader(hostsim_cards.FleetCard(PAN, "2912", "ACME HAULAGE TRUCK 12"))
    assert read_fleet_card(r) == FleetCardData(pan=PAN, expiry="2912", holder="ACME HAULAGE TRUCK 12")


def test_19_digit_fleet_card_through_memory_reader() -> None:
    pan = "7083123456789012346"
    r = _reader(hostsim_cards.FleetCard(pan, "2802", "AB"))
    data = read_fleet_card(r)
    assert (data.pan, data.expiry, data.holder) == (pan, "2802", "AB")


def test_blank_card_through_memory_reader_is_not_accepted() -> None:
    with pytest.raises(CardNotAccepted):
        read_fleet_card(_reader(hostsim_cards.BlankCard()))


def test_fleet_card_with_bad_luhn_through_memory_reader() -> None:
    with pytest.raises(CardError, match="check digit"):
        read_fleet_card(_reader(hostsim_cards.FleetCard("7077001000000018", "2912", "AB")))


def test_card_removed_before_read_is_a_card_error() -> None:
    r = _reader(hostsim_cards.FleetCard(PAN, "2912", "AB"))
    r.remove()
    with pytest.raises(CardRemoved):
        read_fleet_card(r)


def test_chained_61xx_answers_are_followed() -> None:
    full = fci() + OK
    hostile = hostsim_cards.HostileCard([b"\x61" + bytes([len(full) - 2]), full, record() + OK])
    r = _reader(hostile)
    assert read_fleet_card(r).pan == PAN
    assert hostile.commands[1] == bytes([0x00, 0xC0, 0x00, 0x00, len(full) - 2])   # GET RESPONSE


def test_hostile_wrong_aid_through_memory_reader() -> None:
    r = _reader(hostsim_cards.HostileCard([fci(bytes.fromhex("A0000000041010")) + OK]))
    with pytest.raises(CardNotAccepted):
        read_fleet_card(r)


@pytest.mark.parametrize("answers", [[b"\x90"], [b""], [b"\x61\x10", b"\x90"]])
def test_short_answer_through_memory_reader_is_a_card_error(answers: list[bytes]) -> None:
    with pytest.raises(CardError):
        read_fleet_card(_reader(hostsim_cards.HostileCard(answers)))


def test_a_record_repeating_the_card_number_is_a_card_error() -> None:
    # a second 5A could smuggle another number past a reader that keeps the first or the last
    hostile = record(extra=t(0x5A, bcd("7077001000000027"))) + OK
    with pytest.raises(CardError, match="malformed"):
        read_fleet_card(card(read=hostile))
