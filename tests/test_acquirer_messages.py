"""Acquirer ISO 8583:1987 messages in the dialect of contracts.iso8583_spec: builders, parsers, field formats,
hostile input."""

from __future__ import annotations

import datetime as dt
import doctest

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import MessageError
from contracts.iso8583_spec import DIALECT, SPEC
from firmware import tlv
from firmware.acquirer import messages as m

PAN = "4761739001010010"  # Visa test card PAN from the public EMV test card set
TERMINAL = m.Terminal("AFD00001", "000000000123456", "FORECOURT 1 HIGH STREET", city="LONDON",
                      country="GBR", acquirer_id="12345678901")
CHIP = m.Card(pan=PAN, expiry="2812", entry_mode="051", pan_sequence="01")
STRIPE = m.Card(pan=PAN, expiry="2812", entry_mode="902", track2=f"{PAN}=28122011234567890")
WHEN = dt.datetime(2025, 3, 14, 10, 26, 53, tzinfo=dt.timezone(dt.timedelta(hours=1)))
ICC = tlv.encode(0x9F26, bytes.fromhex("1122334455667788")) + tlv.encode(0x9F36, b"\x00\x2a")
ORIGINAL = m.Original(stan="000001", transmission="0314092653", rrn="000000000001", auth_code="123456")
FUEL = [m.FuelLine("001", 41_230, 1_749, 7214)]
AES_KSN = bytes.fromhex("123456789012345600000001")


def _preauth(**kw: object) -> bytes:
    args: dict[str, object] = {"terminal": TERMINAL, "card": CHIP, "amount": 15000, "stan": 1,
                               "when": WHEN, "icc_tlv": ICC}
    args.update(kw)
    return m.preauth_request(**args)  # type: ignore[arg-type]


def _response(code: str, **fields: str) -> bytes:
    return m.encode({"t": "0110", "11": "000001", "39": code, "4": "000000015000", **fields})


def test_doctests() -> None:
    assert doctest.testmod(m).failed == 0


def test_preauth_chip_fields() -> None:
    raw = _preauth(pin_block=bytes(range(8)), ksn=AES_KSN, pump=3)
    doc, _ = iso8583.decode(raw, SPEC)  # the library itself reads it back
    assert doc["t"] == "0100"
    assert doc["2"] == PAN and doc["3"] == "000000" and doc["4"] == "000000015000"
    assert doc["7"] == "0314092653"  # GMT, MMDDhhmmss
    assert (doc["12"], doc["13"]) == ("102653", "0314")  # local time and date
    assert doc["11"] == "000001" and doc["14"] == "2812" and doc["18"] == "5542"
    assert (doc["22"], doc["23"], doc["25"]) == ("051", "001", "06")
    assert doc["41"] == "AFD00001" and doc["49"] == "978" and doc["32"] == "12345678901"
    assert bytes.fromhex(doc["55"]) == ICC
    assert raw[4:12] == bytes.fromhex(doc["p"])  # binary bitmap right after the MTI


def test_pin_block_in_field_52_and_ksn_where_the_spec_puts_it() -> None:
    """Defect: the PIN went to field 110 and the KSN to field 53 as binary LLVAR (1987: n16)."""
    doc = m.decode(_preauth(pin_block=bytes(range(8)), ksn=AES_KSN))
    assert doc[DIALECT.role("pin_block")] == "0001020304050607" and DIALECT.role("pin_block") == "52"
    assert doc[DIALECT.role("ksn")] == AES_KSN.hex().upper() and DIALECT.role("ksn") == "62"
    assert "53" not in doc and "110" not in doc


def test_preauth_flags_unattended_and_partial_approval() -> None:
    """Defect: only 9F35 inside field 55 said unattended; nothing said the pump takes a partial approval."""
    doc = m.decode(_preauth())
    assert doc["61"][0] == "1" and doc["61"][6] == "4" and doc["61"][9] == "2"  # unattended, preauth, CAT 2
    assert doc["48"] == "R610510000"    # subelement 61, subfield 1: partial approval supported


def test_field_43_has_name_city_and_country_positions() -> None:
    f43 = m.decode(_preauth())["43"]
    assert len(f43) == 40 and f43[:22] == "FORECOURT 1 HIGH STREE" and f43[22] == " "
    assert f43[23:36] == "LONDON       " and f43[36] == " " and f43[37:40] == "GBR"


def test_preauth_magstripe_and_fallback_carry_track2_alone() -> None:
    """Defect: a swiped 0100 carried fields 2 and 14 beside track 2."""
    doc = m.decode(_preauth(card=STRIPE, icc_tlv=None))
    assert doc["22"] == "902" and doc["35"] == STRIPE.track2 and "55" not in doc
    assert "2" not in doc and "14" not in doc
    fallback = m.Card(pan=PAN, expiry="2812", entry_mode="801", track2=STRIPE.track2)
    doc = m.decode(_preauth(card=fallback, icc_tlv=None))
    assert doc["22"] == "801" and "2" not in doc and "14" not in doc


@pytest.mark.parametrize("kw", [
    {"icc_tlv": None},  # chip entry needs 55
    {"card": m.Card(pan=PAN, expiry="2812", entry_mode="901")},  # stripe without track 2
    {"amount": 0},
    {"stan": 0},
    {"when": dt.datetime(2025, 1, 1)},  # naive time
    {"pin_block": bytes(8)},  # PIN block without KSN
    {"pin_block": bytes(9), "ksn": bytes(10)},
    {"pin_block": bytes(16), "ksn": bytes(12)},  # a format 4 block does not fit the 1987 b64 field 52
    {"card": m.Card(pan=PAN[:-1] + "X", expiry="2812", entry_mode="051")},
    {"icc_tlv": b"\x9f\x26\x08\x00"},  # truncated TLV
])
def test_preauth_rejects_bad_input_without_the_pan(kw: dict[str, object]) -> None:
    with pytest.raises(MessageError) as err:
        _preauth(**kw)
    assert PAN not in str(err.value) and PAN[:-1] not in str(err.value)


def test_completion_advice() -> None:
    raw = m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL, authorized_amount=15000,
                              dispensed_amount=7214, stan=2, when=WHEN, icc_tlv=ICC, fuel=FUEL, pump=3)
    doc, _ = iso8583.decode(raw, SPEC)
    assert doc["t"] == "0220" and doc["11"] == "000002"
    assert doc["90"] == "0100" + "000001" + "0314092653" + "0" * 22
    assert doc["37"] == "000000000001" and doc["38"] == "123456"
    assert not {"35", "52", "62", "110"} & doc.keys()  # no track or PIN data in advices


def test_completion_field_4_is_the_dispensed_amount() -> None:
    """Defect: field 4 of the 0220 held the authorized 150.00; the dispensed 72.14 hid in field 95."""
    doc = m.decode(m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL,
                                       authorized_amount=15000, dispensed_amount=7214, stan=2, when=WHEN,
                                       fuel=FUEL))
    assert doc["4"] == "000000007214" and "95" not in doc


def test_completion_carries_fuel_product_litres_and_unit_price() -> None:
    """Defect: field 63 fuel lines were never sent."""
    doc = m.decode(m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL,
                                       authorized_amount=15000, dispensed_amount=7214, stan=2, when=WHEN,
                                       fuel=FUEL))
    assert doc["63"] == "001L" + "000041230" + "000001749" + "000000007214"
    assert m.parse_fuel(doc["63"]) == FUEL
    with pytest.raises(MessageError):   # a completion without fuel data is not sent
        m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL, authorized_amount=15000,
                            dispensed_amount=7214, stan=2, when=WHEN)


@pytest.mark.parametrize("dispensed", [0, 15001])
def test_completion_amount_must_be_within_authorization(dispensed: int) -> None:
    with pytest.raises(MessageError):
        m.completion_advice(terminal=TERMINAL, card=CHIP, original=ORIGINAL, authorized_amount=15000,
                            dispensed_amount=dispensed, stan=2, when=WHEN,
                            fuel=[m.FuelLine("001", 1000, 1000, dispensed)])


@pytest.mark.parametrize("reason, code", [(m.ReversalReason.NOTHING_DISPENSED, "17"),
                                          (m.ReversalReason.TIMEOUT, "68"),
                                          (m.ReversalReason.CARD_DECLINED, "06")])
def test_reversal_advice(reason: m.ReversalReason, code: str) -> None:
    raw = m.reversal_advice(terminal=TERMINAL, card=STRIPE, original=m.Original("000007", "0314092653"),
                            amount=15000, reason=reason, stan=8, when=WHEN)
    doc, _ = iso8583.decode(raw, SPEC)
    assert doc["t"] == "0420" and doc["39"] == code and doc["90"].startswith("0100000007")
    assert "35" not in doc and "37" not in doc
    assert m.as_repeat(raw)[:4] == b"0421" and m.as_repeat(raw)[4:] == raw[4:]


def test_repeat_only_for_advices() -> None:
    with pytest.raises(MessageError):
        m.as_repeat(_preauth())


def test_original_of_request_and_response() -> None:
    result = m.parse_preauth_response(_response("00", **{"37": "000000000042", "38": "A1B2C3"}))
    original = m.original_of(_preauth(stan=77), result)
    assert original == m.Original("000077", "0314092653", "0100", "000000000042", "A1B2C3", "12345678901")


def test_parse_approval_with_issuer_data_and_scripts() -> None:
    script71 = tlv.encode(0x71, tlv.encode(0x86, bytes.fromhex("8418000004AABBCCDD")))
    script72 = tlv.encode(0x72, tlv.encode(0x86, bytes.fromhex("8424000000")))
    icc = tlv.encode(0x91, bytes(10)) + tlv.encode(0x8A, b"00") + script71 + script72
    result = m.parse_preauth_response(_response("00", **{"37": "000000000001", "38": "654321",
                                                          "55": icc.hex().upper()}))
    assert result.approved and not result.partial and result.approved_amount == 15000
    assert (result.auth_code, result.rrn, result.stan) == ("654321", "000000000001", "000001")
    assert result.issuer_auth_data == bytes(10) and result.arc == b"00"
    assert result.issuer_scripts == (script71, script72) and result.icc_response_tlv == icc
    assert result.meaning == "approved"


def test_parse_partial_approval() -> None:
    result = m.parse_preauth_response(_response("10", **{"54": "0090978C000000006000"}))
    assert result.approved and result.partial and result.approved_amount == 6000
    with pytest.raises(MessageError):
        m.parse_preauth_response(_response("10", **{"54": "0090978C000000016000"}))


@pytest.mark.parametrize("code, meaning", [("05", "do not honour"), ("51", "insufficient funds"),
                                           ("55", "incorrect PIN"), ("54", "expired card"),
                                           ("91", "issuer or switch inoperative")])
def test_parse_declines(code: str, meaning: str) -> None:
    result = m.parse_preauth_response(_response(code))
    assert not result.approved and result.approved_amount == 0 and result.meaning == meaning


def test_parse_advice_responses() -> None:
    ack = m.parse_completion_response(m.encode({"t": "0230", "11": "000002", "39": "00"}))
    assert ack.acknowledged and ack.stan == "000002"
    nak = m.parse_reversal_response(m.encode({"t": "0430", "11": "000003", "39": "30"}))
    assert not nak.acknowledged and nak.meaning == "format error"
    with pytest.raises(MessageError):
        m.parse_completion_response(m.encode({"t": "0430", "11": "000003", "39": "00"}))
    with pytest.raises(MessageError):
        m.parse_reversal_response(m.encode({"t": "0430", "11": "000003"}))


def test_responses_ignore_fields_the_terminal_does_not_use() -> None:
    """Defect: a 0110 with fields 44, 62 or a private 63 was rejected whole."""
    doc = {"t": "0110", "11": "000001", "39": "00", "4": "000000015000", "38": "654321",
           "44": "AVS RESULT", "62": "ANY PRIVATE DATA", "63": "SOMETHING ELSE ENTIRELY"}
    raw, _ = iso8583.encode(doc, DIALECT.full_spec())
    result = m.parse_preauth_response(bytes(raw))
    assert result.approved and result.auth_code == "654321"
    with pytest.raises(MessageError):   # the host, parsing strictly, refuses what its spec lacks
        m.decode(bytes(raw))


def test_network_echo_is_answered() -> None:
    """Defect: an 0800 from the acquirer was rejected, not answered."""
    raw = bytes(iso8583.encode({"t": "0800", "7": "0314092653", "11": "000099", "70": "301"},
                               DIALECT.full_spec())[0])
    answer = m.decode(m.network_response(raw) or b"")
    assert answer == {"t": "0810", "p": answer["p"], "h": answer.get("h", ""), "7": "0314092653",
                      "11": "000099", "39": "00", "70": "301"} or answer["39"] == "00"
    assert m.network_response(_response("00")) is None


def test_card_repr_masks_pan_and_hides_track() -> None:
    text = repr(STRIPE)
    assert PAN not in text and "476173******0010" in text and "=2812" not in text


def _assert_clean(exc: MessageError) -> None:
    text = f"{exc} {exc!r} {exc.context}"
    assert PAN not in text and PAN[:12] not in text
    # no chained library error holding the raw bytes or the partial decode
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


def test_decode_errors_never_show_the_pan() -> None:
    raw = _preauth()
    for cut in (20, 30, len(raw) - 3):
        with pytest.raises(MessageError) as err:
            m.parse_preauth_response(raw[:cut])
        _assert_clean(err.value)
    bad_amount = raw.replace(b"000000015000", b"00000001500X")
    with pytest.raises(MessageError) as err:
        m.decode(bad_amount)
    _assert_clean(err.value)
    assert err.value.context["field"] == "4"


PARSERS = [m.parse_preauth_response, m.parse_completion_response, m.parse_reversal_response, m.decode]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_message_error(data: bytes) -> None:
    for parse in PARSERS:
        try:
            parse(data)
        except MessageError as exc:
            _assert_clean(exc)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=400),
       st.binary(max_size=8))
def test_mutated_messages_only_raise_message_error(start: int, length: int, splice: bytes) -> None:
    base = _preauth(pin_block=bytes(8), ksn=bytes(12)).replace(b"0100", b"0110", 1)
    mutated = base[:start] + splice + base[start + length:]
    for parse in PARSERS:
        try:
            parse(mutated)
        except MessageError as exc:
            _assert_clean(exc)
