"""firmware.emv.kernel: selection, GPO, records, CVM, TRM, TAA, first and second GENERATE AC against
recorded APDU exchanges written from EMV 4.4 Books 1 and 3 (no ODA here: see test_emv_oda)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from contracts.errors import CardError, CardNotAccepted
from firmware.emv import (
    AidConfig,
    Candidate,
    CandidateList,
    Cryptogram,
    EmvConfig,
    IssuerResponse,
    PinInput,
    TsiBit,
    TvrBit,
    complete,
    run_transaction,
)
from firmware.emv import kernel as kernel_module
from firmware.emv.data import Tsi, Tvr
from firmware.tlv import encode as t
from firmware.tlv import parse

OK = "9000"
NOW = dt.datetime(2025, 6, 15, 10, 30, 0)
UN = "11223344"
PAN = "4761739001010010"
VISA = bytes.fromhex("A0000000031010")
MC = bytes.fromhex("A0000000041010")


class Replay:
    """Recorded exchange: (expected command as a hex regex, response hex) in order."""

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = list(script)
        self.sent: list[str] = []

    def transmit(self, apdu: bytes) -> bytes:
        got = apdu.hex().upper()
        self.sent.append(got)
        if not self.script:
            raise AssertionError(f"unexpected command {got}")
        expected, response = self.script.pop(0)
        if not re.fullmatch(expected.replace(" ", "").upper(), got):
            raise AssertionError(f"expected {expected}, got {got}")
        return bytes.fromhex(response.replace(" ", ""))

    def done(self) -> bool:
        return not self.script


def h(tag: int, value: bytes | str) -> bytes:
    return t(tag, bytes.fromhex(value) if isinstance(value, str) else value)


def resp(data: bytes, sw: str = OK) -> str:
    return data.hex().upper() + sw


CONFIG = EmvConfig(aids=(AidConfig(VISA), AidConfig(MC, partial_match=False)))
SELECT_PSE = "00A404000E315041592E5359532E444446303100"
PSE_FCI = h(0x6F, h(0x84, b"1PAY.SYS.DDF01") + h(0xA5, h(0x88, "01")))
VISA_FCI = h(0x6F, h(0x84, VISA) + h(0xA5, h(0x50, b"VISA CREDIT") + h(0x87, "01") + h(0x9F38, "9F1A02")
                                      + h(0x5F2D, b"en")))
RECORD_1_1 = h(0x70, h(0x57, "4761739001010010D31122010000000000000F") + h(0x5F20, b"TEST/CARD"))
RECORD_2_1 = h(0x70, h(0x5A, PAN) + h(0x5F24, "311231") + h(0x5F25, "200101") + h(0x5F28, "0840")
               + h(0x5F34, "01") + h(0x9F07, "FF00") + h(0x9F08, "008C")
               + h(0x8E, "00000000" "00000000" "4203" "1E03" "1F03")
               + h(0x9F0D, "DC4000A800") + h(0x9F0E, "0010000000") + h(0x9F0F, "DC4004F800"))
CDOL1 = "9F02069F03069F1A0295055F2A029A039C019F3704"
CDOL2 = "8A0295059F3704"
RECORD_2_2 = h(0x70, h(0x8C, CDOL1) + h(0x8D, CDOL2) + h(0x9F14, "03") + h(0x9F23, "09"))
AC1 = "1A2B3C4D5E6F7081"
IAD = "06010A03A00000"


def head(aip: str = "1C00") -> list[tuple[str, str]]:
    """PSE, one directory entry, final SELECT, GPO with PDOL 9F1A02, three records."""
    directory = h(0x70, h(0x61, h(0x4F, VISA) + h(0x50, b"VISA CREDIT") + h(0x87, "01")))
    return [
        (SELECT_PSE, resp(PSE_FCI)),
        ("00B2010C00", resp(directory)),
        ("00B2020C00", "6A83"),
        ("00A4040007A000000003101000", resp(VISA_FCI)),
        ("80A80000048302084000", resp(h(0x80, aip + "08010100" "10010200"))),
        ("00B2010C00", resp(RECORD_1_1)),
        ("00B2011400", resp(RECORD_2_1)),
        ("00B2021400", resp(RECORD_2_2)),
        ("80CA9F3600", resp(h(0x9F36, "0010"))),
        ("80CA9F1300", resp(h(0x9F13, "000F"))),
    ]


def online_pin(kind: str, tries: int | None, pan: str) -> PinInput:
    assert kind == "online" and tries is None
    assert pan and pan.isdigit()       # the format 4 PIN block binds the PAN read from the card
    return PinInput(online_block=bytes(range(16)))


@pytest.fixture(autouse=True)
def fixed_un(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_module, "unpredictable_number", lambda: bytes.fromhex(UN))


# TVR after CVM/TRM: ODA not performed (byte 1 bit 8), online PIN entered (byte 3 bit 3),
# floor limit exceeded (byte 4 bit 8) - Book 3 Annex C5.
TVR_ONLINE = "8000048000"
CDOL1_DATA = "000000004000" "000000000000" "0840" + TVR_ONLINE + "0840" "250615" "00" + UN


def test_online_transaction_then_approval_with_issuer_authentication_and_scripts() -> None:
    card = Replay(head() + [
        ("80AE8000" "1D" + CDOL1_DATA + "00", resp(h(0x80, "80" "0011" + AC1 + IAD))),
    ])
    result = run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=True, now=NOW)
    assert card.done()
    assert result.decision == "online" and result.cryptogram is Cryptogram.ARQC
    assert result.tvr.hex().upper() == TVR_ONLINE
    assert result.cvm_results == bytes.fromhex("420300")
    assert result.online_pin_block == bytes(range(16))
    assert (result.pan, result.pan_sequence, result.expiry) == (PAN, "01", "3112")
    assert result.track2_equivalent is not None and result.track2_equivalent.hex().startswith("4761")
    assert (result.aid, result.app_label, result.language) == (VISA, "VISA CREDIT", "en")
    tsi = bytes(result.tsi)
    assert tsi[0] == 0x68        # cardholder verification (bit 7), card risk mgmt (6), TRM (4) performed
    icc = dict(parse(result.icc_data))
    assert icc[0x9F26].hex().upper() == AC1 and icc[0x9F27] == b"\x80" and icc[0x9F10].hex().upper() == IAD
    assert icc[0x9F37].hex() == UN and icc[0x95].hex().upper() == TVR_ONLINE and icc[0x84] == VISA
    assert icc[0x9F35] == b"\x25" and icc[0x9F33].hex().upper() == "60D8C8" and icc[0x9A].hex() == "250615"
    assert icc[0x9F34].hex() == "420300" and icc[0x82].hex() == "1c00" and icc[0x9F02].hex() == "000000004000"
    assert PAN not in repr(result) and "476173******0010" in repr(result)

    # Host approves with ARPC (91) and two scripts: 71 before, 72 after the second GENERATE AC.
    script71 = h(0x71, h(0x9F18, "00000001") + h(0x86, "84DA9F580501020304A1"))
    script72 = h(0x72, h(0x9F18, "00000002") + h(0x86, "841E000004AABBCCDD"))
    card.script = [
        ("00820000080102030405060708", OK),
        ("84DA9F580501020304A1", OK),
        ("80AE4000" "0B" "3030" + TVR_ONLINE + UN + "00",
         resp(h(0x80, "40" "0011" "0102030405060708" + IAD))),
        ("841E000004AABBCCDD", "6A80"),
    ]
    final = complete(result, IssuerResponse(b"00", bytes.fromhex("0102030405060708"), script71 + script72))
    assert card.done()
    assert final.approved and final.cryptogram is Cryptogram.TC and final.issuer_authenticated
    assert final.script_results.hex().upper() == "2000000001" "1100000002"
    tvr, tsi_final = Tvr(), Tsi()
    tvr._value[:] = final.tvr
    tsi_final._value[:] = final.tsi
    assert TvrBit.SCRIPT_FAILED_AFTER_FINAL_GENERATE_AC in tvr
    assert TvrBit.SCRIPT_FAILED_BEFORE_FINAL_GENERATE_AC not in tvr
    assert TvrBit.ISSUER_AUTHENTICATION_FAILED not in tvr
    assert (TsiBit.ISSUER_AUTHENTICATION_PERFORMED in tsi_final
            and TsiBit.SCRIPT_PROCESSING_PERFORMED in tsi_final)
    assert dict(parse(final.icc_data))[0x9F5B].hex().upper() == "20000000011100000002"
    assert complete(result, IssuerResponse(b"05")) is final        # idempotent


def test_issuer_authentication_refused_and_host_decline() -> None:
    card = Replay(head() + [("80AE8000.*", resp(h(0x80, "80" "0011" + AC1)))])
    result = run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=True, now=NOW)
    card.script = [("00820000.*", "6300"), ("80AE0000.*", resp(h(0x80, "00" "0011" + AC1)))]
    final = complete(result, IssuerResponse(b"05", bytes(8)))
    assert not final.approved and final.cryptogram is Cryptogram.AAC and final.issuer_authenticated is False
    assert final.tvr[4] & 0x40       # issuer authentication failed, byte 5 bit 7
    assert card.sent[-1][8:14] == "0B3035"   # 8A '05' in CDOL2 data


@pytest.mark.parametrize(("tac_default", "kind", "arc"),
                         [("0000000000", "40", "5933"), ("8000000000", "00", "5A33")])
def test_unable_to_go_online_uses_default_action(tac_default: str, kind: str, arc: str) -> None:
    config = EmvConfig(aids=(AidConfig(VISA, tac_default=bytes.fromhex(tac_default)),))
    card = Replay(head() + [("80AE8000.*", resp(h(0x80, "80" "0011" + AC1)))])
    # card's IAC default DC4000A800 includes byte 1 bit 8 (ODA not performed): make the card silent on it
    result = run_transaction(card, config, 4000, pin_entry=online_pin, online=True, now=NOW)
    result._session.store.set(0x9F0D, bytes(5))
    card.script = [(f"80AE{kind}00" "0B" + arc + ".*", resp(h(0x80, kind + "0011" + AC1)))]
    final = complete(result, IssuerResponse(None))
    assert final.arc == bytes.fromhex(arc) and final.approved is (kind == "40")


def test_terminal_offline_asks_tc_or_aac_in_first_generate_ac() -> None:
    card = Replay(head() + [("80AE0000.*", resp(h(0x80, "00" "0011" + AC1)))])
    result = run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=False, now=NOW)
    assert result.requested is Cryptogram.AAC and result.decision == "declined"   # IAC default hits ODA
    final = complete(result, IssuerResponse(b"00"))
    assert not final.approved and card.done()


def test_card_may_not_answer_tc_to_an_arqc_request() -> None:
    card = Replay(head() + [("80AE8000.*", resp(h(0x80, "40" "0011" + AC1)))])
    with pytest.raises(CardError, match="cryptogram type"):
        run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=True, now=NOW)


def test_list_of_aids_with_partial_match_and_next_occurrence() -> None:
    """Book 1 12.3.3: PSE absent (6A82); partial AID A000000003 finds two ADFs, then 6A82."""
    config = EmvConfig(aids=(AidConfig(bytes.fromhex("A000000003")),))
    fci = lambda aid, prio: h(0x6F, h(0x84, aid)
                              + h(0xA5, h(0x50, b"APP" + aid[-1:].hex().encode()) + h(0x87, prio)))
    card = Replay([
        (SELECT_PSE, "6A82"),
        ("00A4040005A00000000300", resp(fci(bytes.fromhex("A0000000032010"), "02"))),
        ("00A4040205A00000000300", resp(fci(VISA, "01"))),
        ("00A4040205A00000000300", "6A82"),
        ("00A4040007A000000003101000", "6A81"),          # final select fails: drop, next candidate
        ("00A4040007A000000003201000",
         resp(h(0x6F, h(0x84, bytes.fromhex("A0000000032010")) + h(0xA5, b"")))),
        ("80A8000002830000", "6985"),                 # GPO refused: no candidate left
    ])
    with pytest.raises(CardNotAccepted):
        run_transaction(card, config, 100, pin_entry=online_pin, online=True, now=NOW)
    assert card.done()


def app_fci(aid: bytes, priority: str = "01") -> bytes:
    return h(0x6F, h(0x84, aid) + h(0xA5, h(0x50, b"APP") + h(0x87, priority)))


BLOCKED = bytes.fromhex("A0000000032010")


@pytest.mark.parametrize("get_response", [
    # T=0 card: 6283 alone, the FCI by GET RESPONSE (Le 00, then the length 6Cxx names) - Book 1 9.3.1.3
    [("00C0000000", f"6C{len(app_fci(BLOCKED)):02X}"),
     (f"00C00000{len(app_fci(BLOCKED)):02X}", resp(app_fci(BLOCKED)))],
    [("00C0000000", "6D00")],                     # no FCI at all: still not the end of the occurrences
], ids=["fci by get response", "no fci"])
def test_blocked_application_does_not_end_the_next_occurrence_loop(
        get_response: list[tuple[str, str]]) -> None:
    """Book 1 12.3.3: a blocked ADF (6283) is no candidate, but the terminal goes on with SELECT next."""
    selected: list[bytes] = []
    card = Replay([(SELECT_PSE, "6A82"), ("00A4040005A00000000300", "6283"), *get_response,
                   ("00A4040205A00000000300", resp(app_fci(VISA))),
                   ("00A4040205A00000000300", "6A82"),
                   ("00A4040007A000000003101000", resp(app_fci(VISA))),
                   ("80A8000002830000", "6985")])
    config = EmvConfig(aids=(AidConfig(bytes.fromhex("A000000003")),))
    with pytest.raises(CardNotAccepted):
        run_transaction(card, config, 100, pin_entry=online_pin, online=True, now=NOW,
                        on_select=lambda app: selected.append(app.aid))
    assert selected == [VISA] and card.done()


def test_6a81_on_final_select_drops_the_candidate_and_tries_the_next() -> None:
    """6A81 ends the card session only while the candidate list is built (Book 1 12.3.2 step 1, 12.3.3
    step 2); at final selection any status other than 9000 removes that candidate (Book 1 12.4)."""
    selected: list[bytes] = []
    directory = h(0x70, h(0x61, h(0x4F, VISA) + h(0x87, "01")) + h(0x61, h(0x4F, MC) + h(0x87, "02")))
    card = Replay([(SELECT_PSE, resp(PSE_FCI)), ("00B2010C00", resp(directory)), ("00B2020C00", "6A83"),
                   ("00A4040007A000000003101000", "6A81"),
                   ("00A4040007A000000004101000", resp(app_fci(MC))),
                   ("80A8000002830000", "6985")])
    with pytest.raises(CardNotAccepted):
        run_transaction(card, CONFIG, 100, pin_entry=online_pin, online=True, now=NOW,
                        choose=lambda c: c.candidates[0], on_select=lambda app: selected.append(app.aid))
    assert selected == [MC] and card.done()


def test_confirmation_flag_and_chooser() -> None:
    directory = h(0x70, h(0x61, h(0x4F, VISA) + h(0x87, "81")) + h(0x61, h(0x4F, MC) + h(0x87, "02")))
    seen: list[CandidateList] = []

    def choose(candidates: CandidateList) -> Candidate | None:
        seen.append(candidates)
        return None
    card = Replay([(SELECT_PSE, resp(PSE_FCI)), ("00B2010C00", resp(directory)), ("00B2020C00", "6A83")])
    with pytest.raises(CardNotAccepted):
        run_transaction(card, CONFIG, 100, pin_entry=online_pin, online=True, now=NOW, choose=choose)
    assert seen[0].confirmation_needed and [c.aid for c in seen[0].candidates] == [VISA, MC]
    # without a chooser, the application that needs confirmation is left out (Book 1 12.4)
    card = Replay([(SELECT_PSE, resp(PSE_FCI)), ("00B2010C00", resp(directory)), ("00B2020C00", "6A83"),
                   ("00A4040007A000000004101000", "6A82")])
    with pytest.raises(CardNotAccepted):
        run_transaction(card, CONFIG, 100, pin_entry=online_pin, online=True, now=NOW)
    assert card.done()


def test_blocked_card_6a81_on_pse_ends_selection() -> None:
    with pytest.raises(CardNotAccepted):
        run_transaction(Replay([(SELECT_PSE, "6A81")]), CONFIG, 1, pin_entry=online_pin, online=True, now=NOW)


def test_gpo_format_2_and_pdol_padding() -> None:
    fci = h(0x6F, h(0x84, VISA) + h(0xA5, h(0x9F38, "9F02049F3501" "9F4005")))
    card = Replay([(SELECT_PSE, "6A82"), ("00A4040007A000000003101000", resp(fci)),
                   ("00A4040007A000000004101000", "6A82"),
                   ("00A4040007A000000003101000", resp(fci)),
                   # PDOL asks 9F02 in 4 bytes: numeric, keep the rightmost digits (Book 3 5.4)
                   ("80A800000C830A0000400025" + "4000A0500100",
                    resp(h(0x77, h(0x82, "1800") + h(0x94, "08010100")))),
                   ("00B2010C00", "6A83")])
    with pytest.raises(CardError, match="READ RECORD failed"):
        run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=True, now=NOW)
    assert card.done()


@pytest.mark.parametrize("psn", ["0102", "1A"])
def test_malformed_pan_sequence_number_ends_the_transaction(psn: str) -> None:
    """5F34 goes into ISO 8583 field 23 (n3): two bytes or non-BCD digits must stop the card here."""
    bad = h(0x70, h(0x5A, PAN) + h(0x5F24, "311231") + h(0x5F34, psn) + h(0x8E, "00000000" "00000000" "1F03"))
    card = Replay([(c, resp(bad) if r == resp(RECORD_2_1) else r) for c, r in head()])
    with pytest.raises(CardError, match="5F34"):
        run_transaction(card, CONFIG, 4000, pin_entry=online_pin, online=True, now=NOW)
