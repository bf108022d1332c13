"""Contactless storage tags: the simulated tag (hostsim.cards.tag), the terminal's recognition and UID read
(firmware.terminal.contactless, serve._card_in), and both through the real pcscd + vpcd."""

from __future__ import annotations

import logging
import re
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import CardError, ConfigError
from drivers.cardreader import PcscReader
from drivers.cardreader.memory import MemoryReader
from firmware.programs.base import ChipCard, Contactless
from firmware.terminal.contactless import (
    GET_UID,
    StorageCard,
    parse_uid,
    read_uid,
    storage_card,
    tag_number,
)
from firmware.terminal.serve import _card_in
from hostsim.cards.atr import check_emv_atr
from hostsim.cards.fleet import DEFAULT_ATR, FleetCard, HostileCard
from hostsim.cards.tag import TAG_KINDS, TagCard, build_storage_atr
from hostsim.pcscd import VPCD_DRIVER
from hostsim.vpcd import VirtualCardServer
from hostsim.world import load_cards
from tests import test_pcsc_reader as pcsc_reader

UID7 = bytes.fromhex("04A1B2C3D4E5F6")

# Published ATRs of PC/SC Part 3 storage cards: pcsc-tools smartcard_list.txt (LudovicRousseau/pcsc-tools,
# commit 3ce4267ffb6c7fc44bee9cdf00c1beb800cff244), the entry for each card name "(as per PCSC std part3)".
PUBLISHED_ATRS = {
    "mifare_classic_1k": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A",
    "mifare_classic_4k": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 02 00 00 00 00 69",
    "mifare_ultralight": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68",
    "mifare_ultralight_c": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 3A 00 00 00 00 51",
    "felica": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 11 00 3B 00 00 00 00 42",
}
# The same list's lines for each card name, any standard byte and TCK ("..").
CARD_NAME_LINES = {
    "mifare_classic_1k": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 01 00 00 00 00 ..",
    "mifare_classic_4k": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 02 00 00 00 00 ..",
    "mifare_ultralight": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 03 00 00 00 00 ..",
    "mifare_mini": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 26 00 00 00 00 ..",
    "mifare_ultralight_c": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 3A 00 00 00 00 ..",
    "felica": "3B 8F 80 01 80 4F 0C A0 00 00 03 06 .. 00 3B 00 00 00 00 ..",
}


def _sw(response: bytes) -> str:
    return response[-2:].hex().upper()


# -- the simulated tag ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(PUBLISHED_ATRS))
def test_built_atr_equals_the_published_one(kind: str) -> None:
    uid = bytes(TAG_KINDS[kind].uid_sizes[0])
    assert TagCard(uid, kind).atr == bytes.fromhex(PUBLISHED_ATRS[kind])


@pytest.mark.parametrize("kind", sorted(TAG_KINDS))
def test_every_kind_matches_the_published_line_of_its_card_name(kind: str) -> None:
    built = TagCard(bytes(TAG_KINDS[kind].uid_sizes[0]), kind).atr.hex(" ").upper()
    assert re.fullmatch(CARD_NAME_LINES[kind].replace("..", "[0-9A-F]{2}"), built)


def test_tag_atr_is_refused_as_an_emv_contact_atr() -> None:
    """hostsim.cards.atr keeps contact cards out of this form; a tag's ATR is exactly that form."""
    with pytest.raises(Exception, match="PC/SC Part 3"):
        check_emv_atr(TagCard(UID7).atr)


@pytest.mark.parametrize("size", [4, 7, 10])
def test_get_data_with_le_00_gives_the_whole_uid(size: int) -> None:
    uid = bytes(range(1, size + 1))
    assert TagCard(uid).apdu(GET_UID) == uid + b"\x90\x00"


def test_get_data_le_exact_short_and_long() -> None:
    tag = TagCard(UID7)
    assert tag.apdu(bytes.fromhex("FFCA000007")) == UID7 + b"\x90\x00"
    assert tag.apdu(bytes.fromhex("FFCA000004")) == b"\x6c\x07"            # 6C and the exact length
    assert tag.apdu(bytes.fromhex("FFCA000010")) == UID7 + b"\x62\x82"     # end of data before Le


def test_get_data_historical_bytes_only_with_an_ats() -> None:
    assert TagCard(UID7).apdu(bytes.fromhex("FFCA010000")) == b"\x6a\x81"
    ats = bytes.fromhex("8073C021C057")
    assert TagCard(UID7, ats_historical=ats).apdu(bytes.fromhex("FFCA010000")) == ats + b"\x90\x00"


@pytest.mark.parametrize("apdu,sw", [
    ("FFCA020000", "6A81"),          # P1 not defined
    ("FFCA000100", "6A81"),          # P2 not 00
    ("00A4040007A0000000031010", "6D00"),   # an ISO 7816-4 SELECT: no application on a storage tag
    ("00B2010C00", "6D00"),
    ("FFB0000410", "6D00"),          # READ BINARY: storage access is not simulated
    ("FFCA0000", "6700"),            # GET DATA without Le
    ("FFCA00000100", "6700"),        # GET DATA with a body
    ("FF", "6D00"),
])
def test_anything_else_is_refused(apdu: str, sw: str) -> None:
    assert _sw(TagCard(UID7).apdu(bytes.fromhex(apdu))) == sw


@pytest.mark.parametrize("kind,uid", [("mifare_ultralight", bytes(4)), ("felica", UID7),
                                      ("mifare_classic_1k", bytes(5)), ("nokia", UID7)])
def test_bad_tag_is_a_config_error(kind: str, uid: bytes) -> None:
    with pytest.raises(ConfigError):
        TagCard(uid, kind)


def test_repr_hides_the_uid() -> None:
    assert UID7.hex().upper() not in repr(TagCard(UID7))


def test_fixture_has_an_acme_tag_and_an_unknown_one() -> None:
    tags = [c for c in load_cards() if c.kind == "tag"]
    assert len(tags) == 2
    made = [c.make() for c in tags]
    assert all(isinstance(t, TagCard) for t in made)
    assert made[0].apdu(GET_UID) == bytes.fromhex(tags[0].fields["uid"]) + b"\x90\x00"
    assert "ACME" in tags[0].name
    # the cards the scenarios pick by index keep their places: tags come after fleet, emv, blank
    kinds = [c.kind for c in load_cards()]
    assert kinds.index("tag") > max(i for i, k in enumerate(kinds) if k in ("fleet", "emv", "blank"))


# -- the terminal side (pure) ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(TAG_KINDS))
def test_storage_card_names_what_the_tag_built(kind: str) -> None:
    spec = TAG_KINDS[kind]
    atr = TagCard(bytes(spec.uid_sizes[0]), kind).atr
    assert storage_card(atr) == StorageCard(spec.standard, spec.card_name)


@pytest.mark.parametrize("atr", [
    DEFAULT_ATR.hex(),
    "3B8F8001804F0CA000000306030001000000006B",       # TCK wrong
    "3B8F8001804F0CA000000306030001000000",           # cut short
    "3B8F8001804F0CA0000003070300010000000069",       # another RID
    "3B8E800180318065B0850300EF120FFF829000",         # ISO 14443-4 card (ATS bytes): a chip card
    "3B8F8001",
    "",
])
def test_other_atrs_are_not_storage_cards(atr: str) -> None:
    assert storage_card(bytes.fromhex(atr)) is None


@given(st.binary(max_size=40))
def test_storage_card_never_raises(atr: bytes) -> None:
    found = storage_card(atr)
    assert found is None or build_storage_atr(found.standard, found.card_name) == atr


@pytest.mark.parametrize("answer,message", [
    ("6A81", "did not give"),
    ("6282", "did not give"),
    ("04A1B2C3D4E5F66282", "did not give"),      # a truncated UID is not taken
    ("9000", "unknown size"),
    ("04A1B2C3D49000", "unknown size"),
    ("08A1B2C39000", "random UID"),              # single size UID 08...: random ID (NXP AN10927)
    ("", "did not give"),
])
def test_parse_uid_refuses(answer: str, message: str) -> None:
    with pytest.raises(CardError, match=message) as info:
        parse_uid(bytes.fromhex(answer))
    assert "A1B2C3" not in str(info.value)


@pytest.mark.parametrize("size", [4, 7, 8, 10])
def test_parse_uid_sizes(size: int) -> None:
    uid = bytes(range(1, size + 1))
    assert parse_uid(uid + b"\x90\x00") == uid


@given(st.binary(max_size=300))
def test_parse_uid_takes_a_uid_or_raises_card_error(answer: bytes) -> None:
    try:
        uid = parse_uid(answer)
    except CardError:
        return
    assert answer == uid + b"\x90\x00" and len(uid) in (4, 7, 8, 10)


@given(st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       st.integers(0, 255))
def test_any_le_gives_the_uid_through_the_reader_driver(uid: bytes, le: int) -> None:
    """Whatever Le the reader asks, the tag's answer and the driver's 6C handling give the whole UID."""
    reader = MemoryReader(TagCard(uid))
    reader.connect()
    answer = reader.transmit(bytes.fromhex("FFCA0000") + bytes([le]))
    if le > len(uid):
        assert answer == uid + b"\x62\x82"
    else:
        assert answer == uid + b"\x90\x00"
    if len(uid) == 4 and uid[0] == 0x08:
        with pytest.raises(CardError):
            read_uid(reader)
    else:
        assert read_uid(reader) == uid
        assert tag_number(uid) == "U" + uid.hex().upper()


def test_read_uid_follows_6c() -> None:
    """A reader that answers 6C xx to Le 00 gets the command again with the length it named (the reader
    driver's complete_response does it)."""
    reader = MemoryReader(HostileCard([b"\x6c\x07", UID7 + b"\x90\x00"], atr=TagCard(UID7).atr))
    reader.connect()
    assert read_uid(reader) == UID7


def test_card_in_gives_contactless_for_a_tag() -> None:
    reader = MemoryReader(TagCard(UID7))
    assert _card_in(reader) == Contactless(UID7)


def test_card_in_gives_a_chip_card_for_a_contact_card() -> None:
    card = FleetCard("7077001000000019", "2912", "ACME HAULAGE")
    card_in = _card_in(MemoryReader(card))
    assert isinstance(card_in, ChipCard) and card_in.atr == card.atr


@pytest.mark.parametrize("answer", ["90", "", "08A1B2C39000", "04A1B2C3D4E5F6A7B8C9D0E1F29000"])
def test_card_in_gives_nothing_for_a_malformed_uid_answer(answer: str) -> None:
    assert _card_in(MemoryReader(HostileCard([bytes.fromhex(answer)], atr=TagCard(UID7).atr))) is None


def test_card_in_logs_a_tag_without_a_uid_and_sells_nothing(caplog: pytest.LogCaptureFixture) -> None:
    tag = HostileCard([b"\x6a\x81"], atr=TagCard(UID7).atr)
    with caplog.at_level(logging.WARNING, logger="firmware.terminal.serve"):
        assert _card_in(MemoryReader(tag)) is None
    assert tag.commands == [GET_UID]
    assert any(r.getMessage() == "tag unreadable" and getattr(r, "card_name", "") == "0001"
               for r in caplog.records)


# -- through pcscd + vpcd ----------------------------------------------------------------------------
pcsc = pytest.mark.skipif(shutil.which("pcscd") is None or not VPCD_DRIVER.exists(),
                          reason="needs the Debian packages pcscd and vsmartcard-vpcd")


# the virtual card server, pcscd on it and a reader of it: test_pcsc_reader's fixtures, by name
card_server, pcscd, reader = pcsc_reader.card_server, pcsc_reader.pcscd, pcsc_reader.reader


@pcsc
@pytest.mark.system
@pytest.mark.parametrize("uid_hex", ["04A1B2C3D4E5F6", "11223344", "04A1B2C3D4E5F6A7B8C9"])
def test_tag_through_pcscd_gives_contactless(reader: PcscReader, card_server: VirtualCardServer,
                                             uid_hex: str) -> None:
    tag = TagCard(bytes.fromhex(uid_hex))
    card_server.insert(tag)
    assert reader.wait_for_card(5)
    assert _card_in(reader) == Contactless(bytes.fromhex(uid_hex))
    reader.disconnect()


@pcsc
@pytest.mark.system
def test_tag_through_pcscd_with_a_short_le(reader: PcscReader, card_server: VirtualCardServer) -> None:
    card_server.insert(TagCard(UID7, "mifare_ultralight"))
    assert reader.wait_for_card(5)
    assert storage_card(reader.connect()) == StorageCard(0x03, 0x0003)
    assert reader.transmit(bytes.fromhex("FFCA000004")) == UID7 + b"\x90\x00"   # 6C07, then again
    reader.disconnect()


@pcsc
@pytest.mark.system
def test_fixture_tag_through_pcscd(reader: PcscReader, card_server: VirtualCardServer) -> None:
    profile = next(c for c in load_cards() if c.kind == "tag")
    card_server.insert(profile.make())
    assert reader.wait_for_card(5)
    assert _card_in(reader) == Contactless(bytes.fromhex(profile.fields["uid"]))
    reader.disconnect()


@pcsc
@pytest.mark.system
def test_bad_tag_through_pcscd_is_no_sale(reader: PcscReader, card_server: VirtualCardServer) -> None:
    card_server.insert(HostileCard([b"\x63\x00"], atr=TagCard(UID7).atr))
    assert reader.wait_for_card(5)
    assert _card_in(reader) is None
    reader.disconnect()
