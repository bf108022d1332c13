"""Hostile card answers: the kernel ends with CardError (or a subclass), never another exception."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import CardError
from firmware.emv import AidConfig, EmvConfig, PinInput, run_transaction
from firmware.emv.action import Cryptogram
from firmware.emv.data import DataStore, build_dol, parse_dol
from firmware.emv.genac import request_ac
from firmware.emv.records import initiate, parse_afl, read_application_data
from firmware.tlv import encode as t

OK = b"\x90\x00"
VISA = bytes.fromhex("A0000000031010")
CONFIG = EmvConfig(aids=(AidConfig(VISA),))
NOW = dt.datetime(2025, 6, 15, 12, 0)
FCI = t(0x6F, t(0x84, VISA) + t(0xA5, t(0x50, b"VISA")))
GOOD_RECORD = t(0x70, t(0x5A, bytes.fromhex("4761739001010010")) + t(0x5F24, bytes.fromhex("301231"))
                + t(0x8C, bytes.fromhex("9F3704")) + t(0x8D, bytes.fromhex("8A02")))


class ByInstruction:
    """Answers by instruction byte; anything not scripted is 6D00."""

    def __init__(self, answers: dict[int, bytes]) -> None:
        self.answers = answers

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[1] == 0xA4:
            return (FCI + OK) if apdu[5:5 + apdu[4]] == VISA and apdu[3] == 0 else b"\x6a\x82"
        return self.answers.get(apdu[1], b"\x6d\x00")


def pin(kind: str, tries: int | None, pan: str) -> PinInput:
    return PinInput(online_block=b"\x00" * 8) if kind == "online" else PinInput()


def run(answers: dict[int, bytes]) -> None:
    run_transaction(ByInstruction(answers), CONFIG, 100, pin_entry=pin, online=True, now=NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gpo=st.binary(max_size=40), record=st.binary(max_size=300), genac=st.binary(max_size=60),
       sw=st.sampled_from([OK, b"\x90\x00", b"\x6a\x83", b"\x61\x05"]))
def test_random_answers_only_raise_card_error(gpo: bytes, record: bytes, genac: bytes, sw: bytes) -> None:
    answers = {0xA8: gpo + OK, 0xB2: record + sw, 0xAE: genac + OK, 0xCA: genac + OK}
    try:
        run(answers)
    except CardError:
        pass


@settings(max_examples=200, deadline=None)
@given(afl=st.binary(max_size=24), record=st.sampled_from([GOOD_RECORD, t(0x70, b""), b"\x70\x81"]))
def test_random_afl_and_records(afl: bytes, record: bytes) -> None:
    answers = {0xA8: t(0x80, b"\x18\x00" + afl) + OK, 0xB2: record + OK,
               0xAE: t(0x80, b"\x80\x00\x01" + bytes(8)) + OK}
    try:
        run(answers)
    except CardError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_random_dol_and_build(dol: bytes) -> None:
    store = DataStore()
    store.set(0x9F02, bytes(6))
    try:
        out = build_dol(dol, store)
    except CardError:
        return
    assert len(out) == sum(length for _, length in parse_dol(dol))


@pytest.mark.parametrize(("afl", "why"), [
    ("00010100", "SFI 0"), ("F8010100", "SFI 31"), ("08020100", "last < first"), ("08000100", "record 0"),
    ("08010102", "ODA count > records"), ("0801", "length"), ("", "empty"), ("09010100", "low bits set"),
])
def test_absurd_afl(afl: str, why: str) -> None:
    with pytest.raises(CardError):
        parse_afl(bytes.fromhex(afl))


def test_missing_mandatory_data() -> None:
    store = DataStore()
    record = t(0x70, t(0x5A, bytes.fromhex("4761739001010010")) + t(0x8C, b"\x9f\x37\x04"))
    reader = ByInstruction({0xB2: record + OK})
    with pytest.raises(CardError, match="mandatory") as info:
        read_application_data(reader, store, parse_afl(bytes.fromhex("08010100")))
    assert "5F24" in str(info.value) and "4761" not in str(info.value)


def test_duplicate_primitive_across_records() -> None:
    reader = ByInstruction({0xB2: GOOD_RECORD + OK})
    with pytest.raises(CardError, match="twice"):
        read_application_data(reader, DataStore(), parse_afl(bytes.fromhex("08010200")))


def test_oversized_and_non_70_records() -> None:
    big = t(0x70, t(0x9F4B, bytes(300)))
    with pytest.raises(CardError, match="too long"):
        read_application_data(ByInstruction({0xB2: big + OK}), DataStore(),
                              parse_afl(bytes.fromhex("08010100")))
    with pytest.raises(CardError, match="70 template"):
        read_application_data(ByInstruction({0xB2: t(0x77, b"") + OK}), DataStore(),
                              parse_afl(bytes.fromhex("08010100")))


@pytest.mark.parametrize("record", [GOOD_RECORD + b"\xff\xff", b"\x00" + GOOD_RECORD,
                                    GOOD_RECORD + t(0x70, b"")], ids=["trailing FF FF", "leading 00", "two"])
def test_record_is_exactly_one_70_template(record: bytes) -> None:
    """Book 3 10.2: padding or a second object around template 70 makes the record malformed."""
    with pytest.raises(CardError, match="70 template"):
        read_application_data(ByInstruction({0xB2: record + OK}), DataStore(),
                              parse_afl(bytes.fromhex("08010100")))

    class BySfi(ByInstruction):
        def transmit(self, apdu: bytes) -> bytes:      # SFI 1 good, SFI 11 the record under test
            return (GOOD_RECORD if apdu[3] >> 3 == 1 else record) + OK
    # SFI 11-30: such a record cannot serve for ODA (Book 3 10.3), so ODA fails
    afl = parse_afl(bytes.fromhex("08010100" "58010101"))
    assert read_application_data(BySfi({}), DataStore(), afl) is None


@pytest.mark.parametrize("answer", [
    t(0x77, t(0x82, b"\x18\x00")),                          # no AFL
    t(0x6F, b"\x18\x00\x08\x01\x01\x00"),                   # wrong template
    t(0x80, b"\x18"),                                       # too short
    t(0x80, b"\x18\x00\x08\x01"),                           # AFL not a multiple of 4
    t(0x80, b"\x18\x00") + t(0x80, b"\x18\x00"),            # two templates
    b"\x80\x05\x18\x00",                                    # truncated
])
def test_bad_gpo_answers(answer: bytes) -> None:
    with pytest.raises(CardError):
        initiate(ByInstruction({0xA8: answer + OK}), DataStore(), b"")


@pytest.mark.parametrize("answer", [
    t(0x77, t(0x9F36, b"\x00\x01") + t(0x9F26, bytes(8))),                     # no CID
    t(0x77, t(0x9F27, b"\x80") + t(0x9F36, b"\x00\x01")),                      # no AC
    t(0x77, t(0x9F27, b"\x80") + t(0x9F27, b"\x80") + t(0x9F36, b"\x00\x01") + t(0x9F26, bytes(8))),
    t(0x80, b"\x80\x00\x01" + bytes(7)),                                       # format 1 too short
    t(0x80, b"\xc0\x00\x01" + bytes(8)),                                       # reserved type (checked later)
    t(0x70, b"\x80\x00\x01" + bytes(8)),
])
def test_bad_generate_ac_answers(answer: bytes) -> None:
    with pytest.raises(CardError):
        reader = ByInstruction({0xAE: answer + OK})
        result = request_ac(reader, DataStore(), Cryptogram.ARQC, b"", cda=False, step="generate_ac_1")
        from firmware.emv.action import card_action
        card_action(result.cid, Cryptogram.ARQC)


def test_pan_never_in_card_error_text() -> None:
    record = t(0x70, t(0x5A, bytes.fromhex("4761739001010011")) + t(0x5F24, bytes.fromhex("301231"))
               + t(0x8C, b"\x9f\x37\x04") + t(0x8D, b"\x8a\x02"))       # Luhn fails
    with pytest.raises(CardError) as info:
        run({0xA8: t(0x80, bytes.fromhex("180008010100")) + OK, 0xB2: record + OK})
    assert "476173900101001" not in str(info.value)
