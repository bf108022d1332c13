"""The broken-chip profile: the ATR comes, every command fails with 6F00, the stripe still reads."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import ConfigError
from contracts.track2 import parse_track2
from drivers.cardreader import MemoryReader
from firmware.programs.bank.magstripe import chip_card, entry_mode_for_swipe
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile

PAN = "4761739001010143"
COMMANDS = [
    bytes.fromhex("00A404000E315041592E5359532E444446303100"),     # SELECT 1PAY.SYS.DDF01
    bytes.fromhex("00A4040007A000000003101000"),                   # SELECT Visa AID
    bytes.fromhex("00B2010C00"),                                   # READ RECORD
    bytes.fromhex("80A8000002830000"),                             # GET PROCESSING OPTIONS
    bytes.fromhex("80CA9F3600"),                                   # GET DATA ATC
    bytes.fromhex("0084000000"),                                   # GET CHALLENGE
    bytes.fromhex("FFFF"),                                         # not even an APDU
]


def test_chip_answers_atr_then_fails_every_command() -> None:
    card = EmvCard.from_profile("visa_chip_broken")
    reader = MemoryReader(card)
    assert reader.connect()[0] == 0x3B
    for command in COMMANDS:
        assert card.apdu(command) == b"\x6f\x00"
    card.reset()
    assert card.apdu(COMMANDS[0]) == b"\x6f\x00"
    assert PAN not in repr(card)


def test_stripe_of_the_broken_chip_card_is_a_fallback() -> None:
    card = EmvCard.from_profile("visa_chip_broken")
    assert card.track2 is not None
    track = parse_track2(card.track2)
    assert track.pan == PAN and track.expiry == "3106" and track.service_code == "201"
    assert chip_card(track.service_code)
    assert entry_mode_for_swipe(track, chip_tried_and_failed=True) == "801"
    assert card.track1 is not None and card.track1.startswith(f"B{PAN}^")


def _profile(**changes: Any) -> dict[str, Any]:
    profile = load_profile("visa_chip_broken")
    profile.update(changes)
    return profile


@pytest.mark.parametrize("sw", ["6A82", "6400", "6D00", "6e00"])
def test_other_error_status_words(sw: str) -> None:
    assert EmvCard(_profile(chip_fault=sw)).apdu(COMMANDS[0]) == bytes.fromhex(sw)


@pytest.mark.parametrize("sw", ["9000", "6100", "6283", "6C10", "6F", "6F0000", "zz00", 0x6F00])
def test_chip_fault_must_be_an_error_status_word(sw: object) -> None:
    with pytest.raises(ConfigError) as info:
        EmvCard(_profile(chip_fault=sw))
    assert info.value.context.get("key") == "chip_fault"


def test_chip_fault_needs_a_chip() -> None:
    with pytest.raises(ConfigError):
        EmvCard(_profile(chip=False))


def test_without_chip_fault_the_visa_card_still_works() -> None:
    card = EmvCard.from_profile("visa_dda_online_pin")
    assert card.apdu(COMMANDS[0]).endswith(b"\x90\x00")
