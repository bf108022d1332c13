"""hostsim.cards.atr: every virtual contact card answers an ATR that an EMV terminal accepts (EMV 4.4 Book 1
section 8), never the PC/SC Part 3 contactless form; T=0 cards hold a warning's data for GET RESPONSE."""

from __future__ import annotations

import pytest

from contracts.errors import ConfigError, MessageError
from drivers.cardreader import MemoryReader
from hostsim.cards.atr import build_atr, check_emv_atr
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile, personalise, profile_names
from hostsim.cards.fleet import DEFAULT_ATR, BlankCard, FleetCard, HostileCard

OLD_ATR = bytes.fromhex("3B8780014643454D5630315C")     # before: TD1 T=0, TD2 T=1, no TB3, PC/SC CL form


@pytest.mark.parametrize("name", profile_names())
def test_every_profile_answers_an_emv_basic_atr(name: str) -> None:
    card = EmvCard.from_profile(name)
    info = check_emv_atr(card.atr)
    assert info.protocol == card.protocol
    assert MemoryReader(card).connect() == card.atr


def test_fleet_and_blank_cards_answer_an_emv_basic_atr() -> None:
    for card in (FleetCard("7077000000000050", "2912", "J DRIVER"), BlankCard(), HostileCard([])):
        assert check_emv_atr(card.atr).protocol == 1
    assert DEFAULT_ATR[:8] == bytes.fromhex("3BE800008131FE45")


def test_the_old_atr_is_rejected() -> None:
    with pytest.raises(MessageError, match="contactless"):
        check_emv_atr(OLD_ATR)


def test_basic_atrs() -> None:
    assert build_atr(b"", 0) == bytes.fromhex("3B600000")
    t1 = build_atr(b"", 1)
    assert t1 == bytes.fromhex("3BE000008131FE45") + bytes([0xE0 ^ 0x81 ^ 0x31 ^ 0xFE ^ 0x45])
    assert check_emv_atr(t1).interface == {"TB1": 0, "TC1": 0, "TD1": 0x81, "TD2": 0x31, "TA3": 0xFE,
                                           "TB3": 0x45}


@pytest.mark.parametrize(("atr", "why"), [
    ("3C600000", "TS"),
    ("3B8780014643454D5630315C", "contactless"),
    ("3BE000008131FE55" + "8E", "TB3"),                   # BWI 5
    ("3BE000008131FE46" + "8D", "TB3"),                   # CWI 6
    ("3BE000008111FE" + "9B", "TB3"),                     # T=1 without TB3
    ("3BE00000813100" + "4F" + "30", "TA3"),              # IFSC 0
    ("3BE000008131FE45" + "00", "TCK"),
    ("3BE0000081" + "31FE45", "length"),                  # T=1 offered, no TCK
    ("3B6200004142" + "FF", "length"),                    # T=0 only: no TCK allowed
    ("3B6200004142"[:10], "length"),                      # historical byte missing
    ("3B80" + "02" + "82", "protocol"),                   # TD1 offers T=2
    ("3B90" + "11" + "20" + "00", "TB2"),                 # TB2 present
    ("3BC0" + "00" + "40" + "00" + "C0", "TC2"),          # TC2 00 (and on T=1 card)
    ("3B" + "E0" * 20, "interface"),
])
def test_atrs_an_emv_terminal_rejects(atr: str, why: str) -> None:
    with pytest.raises(MessageError, match=why):
        check_emv_atr(bytes.fromhex(atr))


def test_profile_atr_is_checked() -> None:
    profile = load_profile("visa_dda_online_pin")
    profile["atr"] = OLD_ATR.hex()
    with pytest.raises(ConfigError, match="ATR"):
        personalise(profile)
    profile["atr"] = "3B6800004643454D56303132"                # a valid T=0 ATR of the profile's own
    assert personalise(profile).protocol == 0


def test_t0_card_holds_the_data_of_a_warning_for_get_response() -> None:
    """EMV Book 1 9.3.1.3: under T=0 a case 4 warning (6283) comes alone; GET RESPONSE Le=00 -> 6Cxx."""
    card = EmvCard.from_profile("visa_dda_online_pin")
    card.application_blocked = True
    select = bytes.fromhex("00A4040007A000000003101000")
    assert card.protocol == 0 and card.apdu(select) == b"\x62\x83"
    wrong_length = card.apdu(bytes.fromhex("00C0000000"))
    assert wrong_length[0] == 0x6C
    fci = card.apdu(bytes.fromhex("00C00000") + wrong_length[1:])
    assert fci[-2:] == b"\x90\x00" and fci[0] == 0x6F and len(fci) - 2 == wrong_length[1]
    assert card.apdu(bytes.fromhex("00C0000000")) == b"\x69\x85"          # handed over once
    t1 = EmvCard.from_profile("mc_cda_offline_pin")
    t1.application_blocked = True
    answer = t1.apdu(bytes.fromhex("00A4040007A000000004101000"))
    assert t1.protocol == 1 and answer[0] == 0x6F and answer[-2:] == b"\x62\x83"    # T=1: data and warning
