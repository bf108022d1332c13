"""firmware.emv steps in isolation: DOL building (Book 3 5.4), processing restrictions (10.4), terminal
risk management (10.6), action analysis (10.7/10.8), language choice, PPSE, configuration."""

from __future__ import annotations

import datetime as dt

import pytest

from contracts.errors import CardError, CardNotAccepted, ConfigError
from firmware.emv import AidConfig, choose_language, load_emv_config, select_ppse
from firmware.emv.action import Cryptogram, after_online, card_action, default_action, terminal_action
from firmware.emv.data import DataStore, TsiBit, TvrBit, build_dol
from firmware.emv.restrictions import process_restrictions
from firmware.emv.risk import terminal_risk_management
from firmware.tlv import encode as t

TODAY = dt.date(2025, 6, 15)
OK = b"\x90\x00"


class Answers:
    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers, self.sent = answers, []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.get(apdu, b"\x6a\x88")


def test_dol_padding_and_truncation() -> None:
    store = DataStore()
    store.set(0x9F02, bytes.fromhex("000000001234"))     # n12
    store.set(0x5A, bytes.fromhex("4761739001010010"))  # cn
    store.set(0x9F1C, b"TERM0001")                      # an
    dol = bytes.fromhex("9F0203" "9F0208" "5A0A" "5A04" "9F1C04" "9F1C0A" "9F4C08" "7002" "95059B02")
    out = build_dol(dol, store)
    assert out.hex().upper() == (
        "001234" "0000000000001234"                      # numeric: rightmost kept / left zero padding
        "4761739001010010FFFF" "47617390"                # compressed numeric: F padding / leftmost kept
        + b"TERM".hex().upper() + b"TERM0001".hex().upper() + "0000"    # others: leftmost / right zeros
        + "0000000000000000" "0000"                      # absent, constructed: zeros
        + "0000000000" "0000")                           # TVR and TSI live from the bit objects
    store.tvr.set(TvrBit.ODA_NOT_PERFORMED)
    store.tsi.set(TsiBit.ODA_PERFORMED)
    assert build_dol(bytes.fromhex("95059B02"), store).hex() == "80000000008000"


def restrictions_store(**values: str) -> DataStore:
    store = DataStore()
    store.set(0x9F1A, bytes.fromhex("0840"))
    store.set(0x9C, b"\x00")
    store.set(0x9F09, bytes.fromhex("008C"))
    for key, value in values.items():
        store.set(int(key[1:], 16), bytes.fromhex(value))
    return store


@pytest.mark.parametrize(("values", "bits"), [
    ({"t9F08": "008C", "t9F07": "FF00", "t5F28": "0840", "t5F24": "301231", "t5F25": "200101"}, []),
    ({"t9F08": "0096"}, [TvrBit.DIFFERENT_APPLICATION_VERSIONS]),
    ({"t5F24": "250614"}, [TvrBit.EXPIRED_APPLICATION]),
    ({"t5F24": "250615"}, []),                                         # valid through its last day
    ({"t5F25": "250616"}, [TvrBit.APPLICATION_NOT_YET_EFFECTIVE]),
    ({"t9F07": "EF00", "t5F28": "0276"}, [TvrBit.SERVICE_NOT_ALLOWED]),  # no international goods
    ({"t9F07": "DF00", "t5F28": "0840"}, [TvrBit.SERVICE_NOT_ALLOWED]),  # no domestic goods
    ({"t9F07": "FE00"}, [TvrBit.SERVICE_NOT_ALLOWED]),                   # ATMs only
    ({"t9F07": "3300", "t5F28": "0840"}, []),
])
def test_processing_restrictions(values: dict[str, str], bits: list[TvrBit]) -> None:
    store = restrictions_store(**values)
    process_restrictions(store, 0x25, bytes.fromhex("4000A05001"), services=False, today=TODAY)
    assert [b for b in TvrBit if b in store.tvr] == bits


def test_malformed_dates_are_card_errors() -> None:
    for bad in ("251399", "AABBCC", "2501"):
        with pytest.raises(CardError):
            process_restrictions(restrictions_store(t5F24=bad), 0x25, bytes(5), services=False, today=TODAY)


def trm_store(lcol: str | None = "03", ucol: str | None = "09") -> DataStore:
    store = DataStore()
    store.set(0x82, bytes.fromhex("1800"))
    if lcol is not None and ucol is not None:
        store.set(0x9F14, bytes.fromhex(lcol))
        store.set(0x9F23, bytes.fromhex(ucol))
    return store


def get_data(atc: int, last: int) -> dict[bytes, bytes]:
    return {bytes.fromhex("80CA9F3600"): t(0x9F36, atc.to_bytes(2, "big")) + OK,
            bytes.fromhex("80CA9F1300"): t(0x9F13, last.to_bytes(2, "big")) + OK}


@pytest.mark.parametrize(("atc", "last", "bits"), [
    (10, 9, []),
    (14, 10, [TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED]),
    (20, 10, [TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED,
              TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED]),
    (2, 0, [TvrBit.NEW_CARD]),
    (5, 5, [TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED,
            TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED]),
])
def test_velocity_checking(atc: int, last: int, bits: list[TvrBit]) -> None:
    store = trm_store()
    terminal_risk_management(Answers(get_data(atc, last)), store, 100,
                             AidConfig(b"\xa0" * 5, floor_limit=10_000))
    assert [b for b in TvrBit if b in store.tvr] == bits
    assert TsiBit.TERMINAL_RISK_MANAGEMENT_PERFORMED in store.tsi


def test_velocity_get_data_refused_sets_both_bits_and_floor_limit_zero() -> None:
    store = trm_store()
    terminal_risk_management(Answers({}), store, 0, AidConfig(b"\xa0" * 5))
    # amount 0 >= floor limit 0 (Book 3 10.6.1: "equal to or exceeds"); no counters: both velocity bits
    assert [b for b in TvrBit if b in store.tvr] == [
        TvrBit.FLOOR_LIMIT_EXCEEDED, TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED,
        TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED]


def test_new_card_bit_when_atc_unreadable_and_last_online_atc_zero() -> None:
    """Book 3 10.6.3: a Last Online ATC Register of zero sets "new card" even if GET DATA ATC fails."""
    store = trm_store()
    answers = {bytes.fromhex("80CA9F1300"): t(0x9F13, b"\x00\x00") + OK}
    terminal_risk_management(Answers(answers), store, 100, AidConfig(b"\xa0" * 5, floor_limit=10_000))
    assert [b for b in TvrBit if b in store.tvr] == [
        TvrBit.NEW_CARD, TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED,
        TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED]


@pytest.mark.parametrize(("amount", "number", "selected"),
                         [(100, 10, True), (100, 11, False), (750, 30, True), (750, 31, False),
                          (1000, 1, False)])
def test_random_transaction_selection(amount: int, number: int, selected: bool) -> None:
    aid = AidConfig(b"\xa0" * 5, floor_limit=1000, threshold=500, target_percent=10, max_target_percent=50)
    store = trm_store(None, None)
    terminal_risk_management(Answers({}), store, amount, aid, rng=lambda: number)
    assert (TvrBit.RANDOMLY_SELECTED_ONLINE in store.tvr) is selected


def test_trm_skipped_when_aip_says_so_and_terminal_agrees() -> None:
    store = trm_store(None, None)
    store.set(0x82, b"\x10\x00")
    assert not terminal_risk_management(Answers({}), store, 100, AidConfig(b"\xa0" * 5),
                                        regardless_of_aip=False)
    assert TsiBit.TERMINAL_RISK_MANAGEMENT_PERFORMED not in store.tsi


def test_terminal_action_analysis() -> None:
    aid = AidConfig(b"\xa0" * 5, tac_denial=bytes.fromhex("0010000000"),
                    tac_online=bytes.fromhex("0000008000"), tac_default=bytes.fromhex("0000008000"))
    store = DataStore()
    store.set(0x9F0D, bytes(5))
    store.set(0x9F0E, bytes(5))
    store.set(0x9F0F, bytes(5))
    assert terminal_action(store, aid, can_go_online=True) is Cryptogram.TC
    store.tvr.set(TvrBit.FLOOR_LIMIT_EXCEEDED)
    assert terminal_action(store, aid, can_go_online=True) is Cryptogram.ARQC
    assert terminal_action(store, aid, can_go_online=False) is Cryptogram.AAC
    assert default_action(store, aid) is Cryptogram.AAC
    store.tvr.set(TvrBit.SERVICE_NOT_ALLOWED)
    assert terminal_action(store, aid, can_go_online=True) is Cryptogram.AAC
    # absent IACs: denial zeros, online and default all ones (Book 3 10.7)
    bare = DataStore()
    bare.tvr.set(TvrBit.NEW_CARD)
    assert terminal_action(bare, AidConfig(b"\xa0" * 5, tac_online=bytes(5)),
                           can_go_online=True) is Cryptogram.ARQC
    assert default_action(bare, AidConfig(b"\xa0" * 5, tac_default=bytes(5))) is Cryptogram.AAC


def test_card_action_analysis() -> None:
    assert card_action(0x80, Cryptogram.ARQC) is Cryptogram.ARQC
    assert card_action(0x00, Cryptogram.ARQC) is Cryptogram.AAC
    assert card_action(0x80, Cryptogram.TC) is Cryptogram.ARQC
    for cid, requested in ((0x40, Cryptogram.ARQC), (0x80, Cryptogram.AAC), (0xC0, Cryptogram.TC)):
        with pytest.raises(CardError):
            card_action(cid, requested)
    with pytest.raises(CardError):
        card_action(0x80, Cryptogram.TC, second=True)
    approved = frozenset({b"00"})
    assert after_online(b"00", approved) is Cryptogram.TC and after_online(b"51", approved) is Cryptogram.AAC


@pytest.mark.parametrize(("preference", "expected"), [
    ("deen", "de"), (b"frde", "de"), ("it", "en"), (None, "en"), ("DE", "de"), ("x", "en")])
def test_choose_language(preference: str | bytes | None, expected: str) -> None:
    assert choose_language(preference, ["en", "de", "nl"]) == expected


def test_select_ppse() -> None:
    directory = (t(0x61, t(0x4F, bytes.fromhex("A0000000041010")) + t(0x87, b"\x02") + t(0x9F2A, b"\x02"))
                 + t(0x61, t(0x4F, bytes.fromhex("A0000000031010")) + t(0x87, b"\x01")))
    fci = t(0x6F, t(0x84, b"2PAY.SYS.DDF01") + t(0xA5, t(0xBF0C, directory)))
    listed = select_ppse(Answers({bytes.fromhex("00A404000E325041592E5359532E444446303100"): fci + OK}))
    assert [c.aid.hex().upper() for c in listed.candidates] == ["A0000000031010", "A0000000041010"]
    assert listed.candidates[1].kernel_id == b"\x02"
    with pytest.raises(CardNotAccepted):
        select_ppse(Answers({}))


def test_load_emv_config() -> None:
    cfg = load_emv_config({"aid": [{"aid": "A0000000031010", "tac_online": "FFFFFFFFFF", "floor_limit": 0}],
                           "ca_key": [{"rid": "a000000003", "index": "92", "modulus": "C1",
                                       "exponent": "03"}]})
    assert cfg.aids[0].tac_online == b"\xff" * 5 and cfg.ca_keys[("A000000003", 0x92)] == (0xC1, 3)
    assert cfg.aid_config(bytes.fromhex("A000000003101001")) is cfg.aids[0]
    with pytest.raises(ConfigError):
        load_emv_config({})
    with pytest.raises(ConfigError):
        load_emv_config({"aid": [{"aid": "XYZ"}]})
