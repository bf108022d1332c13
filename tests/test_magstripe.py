"""Track 2 parsing and the magstripe fallback rules (firmware/magstripe.py)."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import CardError, CardNotAccepted
from contracts.track2 import Track2, parse_track2
from firmware.programs.bank.magstripe import chip_card, entry_mode_for_swipe, expired, sells_goods

PAN = "4761739001010143"                     # test range 476173, Luhn-valid
CONTENT = f"{PAN}=31062010000000000000"      # as in hostsim/fixtures/emv/visa_chip_broken.toml
STRIPE_ONLY = "4761739001010135=31061010000000000000"
DIGIT_RUN = re.compile(r"\d{5,}")


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (1 if i % 2 else 2)
        total += d - 9 if d > 9 else d
    return str(-total % 10)


@pytest.mark.parametrize("text", [
    CONTENT,
    f";{CONTENT}?",
    f";{CONTENT}?5",                          # a trailing LRC character is ignored
    f"{CONTENT}?",
    f";{CONTENT}",
    f";{CONTENT}?\r\n",
    f"{PAN}D31062010000000000000",            # EMV tag 57 style
    f"{PAN}d31062010000000000000",            # bytes.hex() spells it in lower case
    f"{PAN}D3106201000000000000F",            # tag 57 padded to whole bytes
])
def test_parse_accepts_reader_and_emv_forms(text: str) -> None:
    track = parse_track2(text)
    assert (track.pan, track.expiry, track.service_code) == (PAN, "3106", "201")
    assert track.discretionary.startswith("000000000000")


def test_parse_fields_and_raw() -> None:
    track = parse_track2(f";{CONTENT}?")
    assert track == Track2(PAN, "3106", "201", "0000000000000")
    assert track.raw == CONTENT
    assert parse_track2(f"{PAN}=3106201").discretionary == ""


@pytest.mark.parametrize(("text", "words"), [
    ("", "separator"),
    (PAN, "separator"),
    (f"{PAN}=3106201=1", "separator"),
    (f"{PAN[:-1]}0=3106201", "Luhn"),
    ("47617390=3106201", "12 to 19"),
    (f"{PAN}1234=3106201", "12 to 19"),
    ("4761739001O10143=3106201", "12 to 19"),
    (f"{PAN}=3113201", "expiry"),
    (f"{PAN}=3100201", "expiry"),
    (f"{PAN}=31062A1", "service code"),
    (f"{PAN}=310620", "lacks"),
    (f"{PAN}=3106201X", "discretionary"),
    (f"{PAN}=3106201" + "0" * 14, "37"),
    (f";{PAN}=3106201?12", "after the end sentinel"),
    (f"{PAN}=3106201F", "discretionary"),     # F padding only in the 'D' form
    ("４７６１７３９００１０１０１４３=3106201", "12 to 19"),    # full-width digits are not track digits
])
def test_parse_rejects_with_a_reason_and_no_digits(text: str, words: str) -> None:
    with pytest.raises(CardError) as info:
        parse_track2(text)
    assert words in str(info.value)
    assert not DIGIT_RUN.search(str(info.value))
    assert PAN not in repr(info.value)


def test_repr_masks_pan_and_hides_the_rest() -> None:
    track = parse_track2(CONTENT)
    for shown in (repr(track), str(track), f"{track}", repr([track])):
        assert "476173******0143" in shown
        assert PAN not in shown and "3106" not in shown and "201" not in shown


@pytest.mark.parametrize(("service_code", "chip"),
                         [("101", False), ("201", True), ("221", True), ("601", True),
                          ("120", False), ("501", False), ("701", False)])
def test_chip_card(service_code: str, chip: bool) -> None:
    assert chip_card(service_code) is chip


def test_entry_modes() -> None:
    chip = parse_track2(CONTENT)
    stripe = parse_track2(STRIPE_ONLY)
    assert entry_mode_for_swipe(chip, chip_tried_and_failed=True) == "801"
    assert entry_mode_for_swipe(stripe, chip_tried_and_failed=False) == "901"
    assert entry_mode_for_swipe(stripe, chip_tried_and_failed=True) == "901"
    with pytest.raises(CardNotAccepted) as info:
        entry_mode_for_swipe(chip, chip_tried_and_failed=False)
    assert "insert the chip" in str(info.value) and PAN not in str(info.value)


@pytest.mark.parametrize(("digit", "ok"), [("0", True), ("1", True), ("2", True), ("3", False),
                                           ("4", False), ("5", True), ("6", True), ("7", True)])
def test_atm_only_and_cash_only_cards_buy_no_fuel(digit: str, ok: bool) -> None:
    assert sells_goods("20" + digit) is ok


def test_expired_after_the_last_day_of_the_month() -> None:
    track = parse_track2(f"{PAN}=2602201")
    assert not expired(track, date(2026, 2, 28))
    assert not expired(track, date(2025, 12, 31))
    assert expired(track, date(2026, 3, 1))
    assert expired(track, date(2027, 1, 1))


def test_constructor_validates_like_the_parser() -> None:
    with pytest.raises(CardError):
        Track2(PAN, "3113", "201", "")
    with pytest.raises(CardError):
        Track2(PAN, "3106", "201", "00=0")


@given(st.text(max_size=60))
def test_parse_raises_only_card_error(text: str) -> None:
    try:
        track = parse_track2(text)
    except CardError as exc:
        assert not DIGIT_RUN.search(str(exc))
    else:
        assert parse_track2(track.raw) == track


@given(st.text(alphabet=";?=Dd0123456789F \r", max_size=45))
def test_parse_raises_only_card_error_on_track_like_text(text: str) -> None:
    try:
        parse_track2(text)
    except CardError as exc:
        assert not DIGIT_RUN.search(str(exc))


@st.composite
def tracks(draw: st.DrawFn) -> Track2:
    body = draw(st.text(alphabet="0123456789", min_size=11, max_size=18))
    pan = body + luhn_digit(body)
    expiry = f"{draw(st.integers(0, 99)):02d}{draw(st.integers(1, 12)):02d}"
    service = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    discretionary = draw(st.text(alphabet="0123456789", max_size=37 - len(pan) - 8))
    return Track2(pan, expiry, service, discretionary)


@given(tracks(), st.sampled_from(["{}", ";{}?", ";{}?:", "{}?"]))
def test_raw_round_trips(track: Track2, frame: str) -> None:
    assert parse_track2(frame.format(track.raw)) == track
    emv = track.raw.replace("=", "D")
    assert parse_track2(emv + "F" * (len(emv) % 2)) == track
    assert track.pan not in repr(track)
