"""Our acquirer frames read by an ISO 8583 implementation that is not ours: pyiso8583's own ISO 8583:1987
field table (`iso8583.specs.default`, binary bitmaps, ASCII fields), written independently of
contracts.iso8583_spec. Every field it finds must hold the value we put there, for every frame of the default
dialect, the 0100 with an online PIN included: nothing in the table is widened.

The PIN frame uses the ANSI X9.24-1-2009 A.4 TDES DUKPT test data (BDK 0123456789ABCDEFFEDCBA9876543210,
KSN FFFF9876543210E00001, PIN 1234, PAN 4012345678909 -> encrypted format 0 block 1B9C1845EB993A7A), as in
tests/test_dukpt_tdes.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import iso8583
import iso8583.specs
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from psec.pinblock import decode_pinblock_iso_0

from contracts.errors import MessageError
from contracts.iso8583_spec import DIALECT, DIALECT_AES_PIN
from drivers.pinpad.dukpt_tdes import host_derive_pin_key
from firmware.acquirer import messages as m
from hostsim.acquirer_host import AcquirerHost

PAN = "4012345678909"
BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KSN = bytes.fromhex("FFFF9876543210E00001")
PIN_BLOCK = bytes.fromhex("1B9C1845EB993A7A")        # A.4.2, counter 1
WHEN = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
TERMINAL = m.Terminal("AFD00001", "000000000123456", "FORECOURT 1", city="BERLIN", country="DEU",
                      acquirer_id="12345678901")
STRIPE = m.Card(pan=PAN, expiry="2812", entry_mode="801", track2=f"{PAN}=28122011234567890")
CHIP = m.Card(pan=PAN, expiry="2812", entry_mode="051", pan_sequence="01")
ICC = bytes.fromhex("9F2608A1B2C3D4E5F607189F36020042")
ORIGINAL = m.Original("000001", "0314092653", rrn="000000000001", auth_code="123456",
                      acquirer_id="12345678901")
ISO1987: dict[str, Any] = iso8583.specs.default


def _clear_pin(block: bytes, ksn_hex: str, pan: str) -> str:
    key = host_derive_pin_key(BDK, bytes.fromhex(ksn_hex))
    clear = Cipher(TripleDES(key + key[:8]), modes.ECB()).decryptor().update(block)
    return str(decode_pinblock_iso_0(clear, pan))


class _Keys:
    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)

    def read_key(self, timeout: float) -> str | None:
        return self.keys.pop(0) if self.keys else None


def _theirs(raw: bytes) -> dict[str, str]:
    doc, _ = iso8583.decode(raw, ISO1987)
    return {k: v for k, v in doc.items() if k not in ("h", "p", "1")}


def _ours(raw: bytes, dialect: Any) -> dict[str, str]:
    return {k: v for k, v in m.decode(raw, dialect).items() if k not in ("h", "p", "1")}


def _frames(dialect: Any) -> dict[str, bytes]:
    """Frames of every kind; the format 0 PIN frame only for a dialect whose field 52 is b64."""
    frames = {} if dialect.spec["52"]["max_len"] != 8 else {
        "fallback 0100 with PIN": m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=1,
                                                    when=WHEN, pin_block=PIN_BLOCK, ksn=KSN, dialect=dialect)}
    return frames | {
        "chip 0100, offline PIN": m.preauth_request(terminal=TERMINAL, card=CHIP, amount=15000, stan=2,
                                                    when=WHEN, icc_tlv=ICC, dialect=dialect),
        "0220": m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL, authorized_amount=15000,
                                    dispensed_amount=3318, stan=3, when=WHEN, icc_tlv=ICC, dialect=dialect,
                                    fuel=[m.FuelLine("019", 20_000, 1_659, 3318)]),
        "0420": m.reversal_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL, amount=15000, stan=4,
                                  when=WHEN, reason=m.ReversalReason.NOTHING_DISPENSED, dialect=dialect),
    }


@pytest.mark.parametrize("name", list(_frames(DIALECT)))
def test_a_1987_decoder_reads_every_frame_as_we_wrote_it(name: str) -> None:
    """Defect: field 53 sent as binary LLVAR (1987: n16) stopped a 1987 parser in its tracks."""
    raw = _frames(DIALECT)[name]
    assert _theirs(raw) == _ours(raw, DIALECT)


def test_the_pin_is_where_a_1987_host_looks_for_it() -> None:
    theirs = _theirs(_frames(DIALECT)["fallback 0100 with PIN"])
    assert theirs["52"] == PIN_BLOCK.hex().upper() and theirs["62"] == KSN.hex().upper()
    assert _clear_pin(bytes.fromhex(theirs["52"]), theirs["62"], PAN) == "1234"
    assert "53" not in theirs and "110" not in theirs and "2" not in theirs and "14" not in theirs


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")  # psec's TDES name
def test_the_pin_pads_0100_is_plain_1987_and_its_pin_opens_under_the_2tdea_working_key() -> None:
    """Defect: the default dialect widened field 52 to carry a 16-byte AES block; a strict 1987 host could
    not parse a PIN 0100. Now the PIN pad makes the format 0 block (2TDEA working key of its AES DUKPT
    initial key, X9.24-3-2017 6.3.3) and pyiso8583's plain 1987 table reads the whole frame."""
    from psec.des import decrypt_tdes_ecb

    from drivers.pinpad.dukpt_aes import TerminalDukpt, derive_initial_key, host_derive_working_key
    from drivers.pinpad.pinpad import PinPad

    bdk, ikid = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1"), bytes.fromhex("1234567890123456")
    pad = PinPad(_Keys("4", "3", "2", "1", "ENTER"), bytes(16),
                 TerminalDukpt(derive_initial_key(bdk, ikid), ikid))
    ksn, block = pad.read_dukpt_pin_block(PAN, 5, fmt=DIALECT.pin_block)
    raw = m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=1, when=WHEN, pin_block=block,
                            ksn=ksn)                                   # the default dialect
    theirs = _theirs(raw)
    assert theirs == _ours(raw, DIALECT) and theirs["52"] == block.hex().upper() and len(block) == 8
    key = host_derive_working_key(bdk, bytes.fromhex(theirs["62"]), "pin_encryption", "TDEA2")
    assert decode_pinblock_iso_0(decrypt_tdes_ecb(key, bytes.fromhex(theirs["52"])), PAN) == "4321"


def test_the_aes_pin_dialect_widens_field_52_and_departs_from_1987() -> None:
    """DIALECT_AES_PIN carries a 16-byte ISO 9564 format 4 block in a b128 field 52: the plain 1987 table
    misreads its PIN 0100; with only field 52 widened it reads the rest unchanged."""
    raw = m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=1, when=WHEN,
                            pin_block=bytes(range(16)), ksn=bytes(12), dialect=DIALECT_AES_PIN)
    try:
        plain = _theirs(raw)
    except iso8583.DecodeError:
        plain = {}
    assert plain != _ours(raw, DIALECT_AES_PIN)
    widened = {**ISO1987, "52": {**ISO1987["52"], "max_len": 16}}
    doc, _ = iso8583.decode(raw, widened)
    assert doc["52"] == bytes(range(16)).hex().upper() and doc["62"] == "00" * 12
    assert {k: v for k, v in doc.items() if k not in ("h", "p", "1")} == _ours(raw, DIALECT_AES_PIN)
    with pytest.raises(MessageError):      # and an 8-byte block does not fit its field 52
        m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=6, when=WHEN,
                          pin_block=bytes(8), ksn=bytes(12), dialect=DIALECT_AES_PIN)


@pytest.mark.parametrize("name", ["chip 0100, offline PIN", "0220", "0420"])
def test_frames_without_a_pin_block_are_the_same_in_both_dialects(name: str) -> None:
    assert _frames(DIALECT)[name] == _frames(DIALECT_AES_PIN)[name]
    raw = _frames(DIALECT)[name]
    assert _theirs(raw) == _ours(raw, DIALECT)


def test_the_default_dialects_host_verifies_the_pin_in_field_52() -> None:
    def verify(block: bytes, ksn_hex: str, pan: str) -> bool:
        try:
            return _clear_pin(block, ksn_hex, pan) == "1234"
        except ValueError:
            return False

    host = AcquirerHost({}, verify, today=lambda: dt.date(2025, 3, 14))
    answer = m.parse_preauth_response(host.handle(_frames(DIALECT)["fallback 0100 with PIN"]) or b"")
    assert answer.approved
    wrong = m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=5, when=WHEN,
                              pin_block=bytes.fromhex("10A01C8D02C69107"), ksn=KSN)
    assert m.parse_preauth_response(host.handle(wrong) or b"").response_code == "55"
    with pytest.raises(MessageError):      # an AES block does not fit this acquirer's b64 field 52
        m.preauth_request(terminal=TERMINAL, card=STRIPE, amount=15000, stan=6, when=WHEN,
                          pin_block=bytes(16), ksn=bytes(12))


# Where our field table departs from pyiso8583's 1987 transcription (contracts.iso8583_spec): 52 the AES PIN
# block (DIALECT_AES_PIN only); 61 capped at Mastercard's ans..26 inside 1987's ans..999; 54 capped at six
# 20-character amounts (an..120; pyiso8583 allows 240). The length prefix is the same for every field.
DEPARTURES = {"afd-1987": {"54", "61"}, "afd-1987-aes-pin": {"52", "54", "61"}}


@pytest.mark.parametrize("name", sorted(DEPARTURES))
def test_our_field_table_matches_the_independent_1987_table(name: str) -> None:
    from contracts.iso8583_spec import DIALECTS

    dialect = DIALECTS[name]
    for key, ours in dialect.spec.items():
        if key in ("h", "t", "p", "1"):
            continue
        theirs = ISO1987[key]
        same = (ours["data_enc"], ours["len_type"], ours["max_len"]) == (
            theirs["data_enc"], theirs["len_type"], theirs["max_len"])
        assert same or key in DEPARTURES[name], key
        assert ours["len_type"] == theirs["len_type"], key        # the length prefix never departs


@pytest.mark.parametrize("name", sorted(DEPARTURES))
def test_dialect_data_is_consistent(name: str) -> None:
    from contracts.iso8583_spec import DIALECTS

    dialect = DIALECTS[name]
    assert set(dialect.formats) <= set(dialect.spec) and set(dialect.spec) - {"h"} <= set(dialect.formats)
    assert set(dialect.roles.values()) <= set(dialect.spec)
    for mti, fields in dialect.mandatory.items():
        assert dialect.pattern("t") is not None and dialect.pattern("t").fullmatch(mti), mti  # type: ignore[union-attr]
        assert {k for f in fields for k in f.split("|")} <= set(dialect.spec), mti
    # the PIN block format fits the PIN field: format 0 is 8 bytes, format 4 is 16 (ISO 9564-1)
    block_len = {"iso0-tdea2": 8, "iso4-aes": 16}[dialect.pin_block]
    assert dialect.spec[dialect.role("pin_block")]["max_len"] == block_len
