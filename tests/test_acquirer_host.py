"""The simulated acquirer/issuer host over TCP: ARQC checks with real pyemv cryptograms,
PIN, rules, advices."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator

import iso8583
import psec.pinblock
import pyemv.cvn
import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.utils import CryptographyDeprecationWarning

from contracts.errors import HostUnavailable
from contracts.iso8583_spec import DIALECT
from drivers.acquirer import AcquirerLink
from firmware import tlv
from firmware.acquirer import messages as m
from hostsim.acquirer_host import AcquirerHost
from hostsim.emv_host_crypto import CSU_APPROVED, cryptogram_version

PAN = "4761739001010010"
IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # test issuer master key
PEK = bytes.fromhex("89B07B35A1B3F47E89B07B35A1B3F47E")  # test PIN encryption key (host and pad share it)
TERMINAL = m.Terminal("AFD00001", "000000000123456", "FORECOURT 1")
WHEN = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
CvnClass = type[pyemv.cvn.VisaCVN10] | type[pyemv.cvn.VisaCVN18] | type[pyemv.cvn.MasterCardCVN16]
# Issuer Application Data (9F10) per CVN: Visa 06 DKI CVN CVR(4); M/Chip DKI CVN CVR(6) then 10 bytes.
CVNS: dict[str, tuple[CvnClass, bytes]] = {
    "visa_cvn10": (pyemv.cvn.VisaCVN10, bytes.fromhex("06010A03A00000")),
    "visa_cvn18": (pyemv.cvn.VisaCVN18, bytes.fromhex("06011203A00000")),
    "mc_cvn16": (pyemv.cvn.MasterCardCVN16, bytes.fromhex("0110A00000000000") + bytes(10)),
}


@pytest.fixture(autouse=True)
def _pyemv_uses_deprecated_tdes() -> Iterator[None]:
    """pyemv takes TripleDES from cryptography's main module, deprecated there (pyproject pins <48)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def card_icc(cryptogram: str, amount: int, psn: str = "01") -> tuple[bytes, bytes]:
    """(field 55 TLV, ARQC) as a card personalised from IMK_AC would make them, using pyemv."""
    iad = CVNS[cryptogram][1]
    data = {0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0826"),
            0x95: bytes.fromhex("0000008000"), 0x5F2A: bytes.fromhex("0978"), 0x9A: bytes.fromhex("250314"),
            0x9C: b"\x00", 0x9F37: bytes.fromhex("52BF4585")}
    aip, atc = bytes.fromhex("1800"), bytes.fromhex("002A")
    kw = {"tag_9f02": data[0x9F02], "tag_9f03": data[0x9F03], "tag_9f1a": data[0x9F1A], "tag_95": data[0x95],
          "tag_5f2a": data[0x5F2A], "tag_9a": data[0x9A], "tag_9c": data[0x9C], "tag_9f37": data[0x9F37],
          "tag_82": aip, "tag_9f36": atc}
    if cryptogram == "visa_cvn18":
        arqc = pyemv.cvn.VisaCVN18(IMK_AC, IMK_AC, IMK_AC, PAN, psn).generate_ac(**kw, tag_9f10=iad)
    elif cryptogram == "visa_cvn10":  # CVR = IAD bytes 4-7
        arqc = pyemv.cvn.VisaCVN10(IMK_AC, IMK_AC, IMK_AC, PAN, psn).generate_ac(**kw, cvr=iad[3:7])
    else:  # M/Chip CVR = IAD bytes 3-8
        arqc = pyemv.cvn.MasterCardCVN16(IMK_AC, IMK_AC, IMK_AC, PAN, psn).generate_ac(**kw, cvr=iad[2:8])
    data.update({0x82: aip, 0x9F36: atc, 0x9F10: iad, 0x9F26: arqc, 0x9F27: b"\x80"})
    return b"".join(tlv.encode(t, v) for t, v in data.items()), arqc


def _tdes(encrypt: bool, data: bytes) -> bytes:
    cipher = Cipher(TripleDES(PEK + PEK[:8]), modes.ECB())
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def pin_verifier(pin_block: bytes, ksn_hex: str, pan: str) -> bool:
    clear = _tdes(False, pin_block)
    try:
        return psec.pinblock.decode_pinblock_iso_0(clear, pan) == "1234"
    except ValueError:
        return False


def enciphered_pin(pin: str) -> bytes:
    return _tdes(True, psec.pinblock.encode_pinblock_iso_0(pin, PAN))


class Rules:
    def __init__(self) -> None:
        self.next = "approve"

    def __call__(self, request: dict[str, str]) -> str:
        return self.next


@pytest.fixture
def rules() -> Rules:
    return Rules()


@pytest.fixture
def host(rules: Rules) -> Iterator[AcquirerHost]:
    # the default dialect takes 1987 b64 PIN blocks: ISO 9564 format 0 (here under TDES DUKPT test data)
    with AcquirerHost({"476173": IMK_AC, "9999": bytes(16)}, pin_verifier, rules,
                      today=lambda: dt.date(2025, 3, 14), dialect=DIALECT) as h:
        yield h


@pytest.fixture
def link(host: AcquirerHost) -> Iterator[AcquirerLink]:
    with AcquirerLink("127.0.0.1", host.port, connect_timeout=1.0, response_timeout=1.0,
                      dialect=DIALECT) as lk:
        yield lk


def preauth(link: AcquirerLink, *, amount: int = 15000, icc: bytes | None = None, pin: str | None = "1234",
            expiry: str = "2812", stan: int = 1, timeout: float | None = None) -> m.PreauthResult:
    card = m.Card(pan=PAN, expiry=expiry, entry_mode="051", pan_sequence="01")
    icc = icc if icc is not None else card_icc("visa_cvn18", amount)[0]
    raw = m.preauth_request(terminal=TERMINAL, card=card, amount=amount, stan=stan, when=WHEN, icc_tlv=icc,
                            pin_block=enciphered_pin(pin) if pin else None,
                            ksn=bytes.fromhex("FFFF9876543210E00001") if pin else None, dialect=DIALECT)
    return m.parse_preauth_response(link.exchange(raw, timeout), DIALECT)


@pytest.mark.parametrize("cryptogram", sorted(CVNS))
def test_approve_with_a_real_arqc_and_arpc(link: AcquirerLink, host: AcquirerHost, cryptogram: str) -> None:
    icc, arqc = card_icc(cryptogram, 15000)
    result = preauth(link, icc=icc)
    assert result.approved and result.response_code == "00" and result.approved_amount == 15000
    assert result.auth_code and result.rrn and result.arc == b"00"
    cls, iad = CVNS[cryptogram]
    assert cryptogram_version(iad) == cryptogram
    card = cls(IMK_AC, IMK_AC, IMK_AC, PAN, "01")
    auth = result.issuer_auth_data
    assert auth is not None
    if isinstance(card, pyemv.cvn.VisaCVN18):  # ARPC method 2: ARPC(4) || CSU(4)
        assert auth[4:] == CSU_APPROVED
        assert card.generate_arpc(arqc, bytes.fromhex("002A"), CSU_APPROVED) == auth[:4]
    else:  # method 1: ARPC(8) || ARC(2)
        assert isinstance(card, (pyemv.cvn.VisaCVN10, pyemv.cvn.MasterCardCVN16))
        assert auth[8:] == b"00" and card.generate_arpc(arqc, b"00") == auth[:8]
    assert host.decisions[-1]["code"] == "00"


def test_no_pin_data_recorded(link: AcquirerLink, host: AcquirerHost) -> None:
    preauth(link)
    block = enciphered_pin("1234").hex().upper()
    assert not {"52", "62"} & host.requests[0].keys() and block not in repr(host.requests)


def test_wrong_arqc_is_declined(link: AcquirerLink, host: AcquirerHost) -> None:
    icc, arqc = card_icc("visa_cvn18", 15000)
    forged = icc.replace(arqc, bytes(b ^ 1 for b in arqc))
    result = preauth(link, icc=forged)
    assert not result.approved and result.response_code == "05" and result.issuer_auth_data is None
    assert host.decisions[-1]["reason"] == "ARQC does not verify"


def test_arqc_for_another_amount_is_declined(link: AcquirerLink, host: AcquirerHost) -> None:
    result = preauth(link, amount=15000, icc=card_icc("visa_cvn18", 9000)[0])
    assert result.response_code == "05"
    assert host.decisions[-1]["reason"] == "ARQC amount differs from field 4"


def test_wrong_pin_and_expired_card(link: AcquirerLink) -> None:
    assert preauth(link, pin="9999").response_code == "55"
    assert preauth(link, stan=2, expiry="2502").response_code == "54"
    assert preauth(link, stan=3, pin=None).response_code == "00"


def test_partial_approval(link: AcquirerLink, rules: Rules) -> None:
    rules.next = "partial:6000"
    result = preauth(link)
    assert result.approved and result.partial and result.approved_amount == 6000
    assert result.response_code == "10" and result.arc == b"10"


@pytest.mark.parametrize("code", ["05", "51"])
def test_rules_decline(link: AcquirerLink, rules: Rules, code: str) -> None:
    rules.next = f"decline:{code}"
    result = preauth(link)
    assert not result.approved and result.response_code == code
    assert result.issuer_auth_data is not None  # the card still authenticates the issuer on a decline


def test_timeout_then_drop_then_recover(link: AcquirerLink, host: AcquirerHost, rules: Rules) -> None:
    rules.next = "timeout"
    with pytest.raises(HostUnavailable):
        preauth(link, timeout=0.3)
    rules.next = "drop"
    with pytest.raises(HostUnavailable):
        preauth(link, stan=2)
    assert not link.connected
    rules.next = "approve"
    assert preauth(link, stan=3).approved
    assert [d["code"] for d in host.decisions] == ["--", "--", "00"]


CARD = m.Card(pan=PAN, expiry="2812", entry_mode="051", pan_sequence="01")


def _original(result: m.PreauthResult, stan: str = "000001") -> m.Original:
    return m.Original(stan, WHEN.strftime("%m%d%H%M%S"), rrn=result.rrn, auth_code=result.auth_code)


def _completion(original: m.Original, amount: int, stan: int = 2) -> bytes:
    return m.completion_advice(terminal=TERMINAL, card=CARD, original=original, authorized_amount=15000,
                               dispensed_amount=amount, stan=stan, when=WHEN,
                               fuel=[m.FuelLine("002", 50_100, 1_749, amount)], dialect=DIALECT)


def test_completion_and_reversal_advices_acknowledged(link: AcquirerLink, host: AcquirerHost) -> None:
    first = preauth(link)
    original = _original(first)
    ack = m.parse_completion_response(link.exchange(_completion(original, 8765)), DIALECT)
    assert ack.acknowledged and ack.stan == "000002"
    second = preauth(link, stan=5)
    back = m.reversal_advice(terminal=TERMINAL, card=CARD, original=_original(second, "000005"),
                             amount=15000, reason=m.ReversalReason.CARD_DECLINED, stan=3, when=WHEN,
                             dialect=DIALECT)
    assert m.parse_reversal_response(link.exchange(back), DIALECT).acknowledged
    assert m.parse_reversal_response(link.exchange(m.as_repeat(back)), DIALECT).acknowledged
    assert [a["t"] for a in host.advices] == ["0220", "0420", "0421"]
    assert host.advices[0]["37"] == first.rrn and host.advices[1]["39"] == "06"
    assert host.releases == {"000005" + original.transmission: 15000} and host.repeats == 1


def test_host_settles_field_4_of_the_completion(link: AcquirerLink, host: AcquirerHost) -> None:
    """Defect: the host never read what the advice said was dispensed; it now settles field 4."""
    original = _original(preauth(link))
    assert m.parse_completion_response(link.exchange(_completion(original, 3318)), DIALECT).acknowledged
    assert host.settled_total == 3318
    settled = host.settlements["000001" + original.transmission]
    assert settled["fuel"][0].product == "002" and settled["fuel"][0].quantity_milli == 50_100


def test_repeat_of_an_advice_settles_once(link: AcquirerLink, host: AcquirerHost) -> None:
    """Crash window 5: the 0230 came, the terminal died before marking the advice acknowledged and sends it
    again as a repeat; the host sees both (same STAN and RRN) and settles once."""
    original = _original(preauth(link))
    done = _completion(original, 3318)
    assert m.parse_completion_response(link.exchange(done), DIALECT).acknowledged
    assert m.parse_completion_response(link.exchange(m.as_repeat(done)), DIALECT).acknowledged
    first, repeat = host.advices
    assert (first["t"], repeat["t"]) == ("0220", "0221")
    assert first["11"] == repeat["11"] and first["37"] == repeat["37"] and first["90"] == repeat["90"]
    assert host.settled_total == 3318 and len(host.settlements) == 1 and host.repeats == 1


def test_completion_over_the_approval_or_without_an_original_is_refused(link: AcquirerLink,
                                                                       host: AcquirerHost) -> None:
    original = _original(preauth(link, amount=5000, icc=card_icc("visa_cvn18", 5000)[0]))
    over = m.completion_advice(terminal=TERMINAL, card=CARD, original=original, authorized_amount=6000,
                               dispensed_amount=6000, stan=2, when=WHEN,
                               fuel=[m.FuelLine("002", 1000, 1000, 6000)], dialect=DIALECT)
    assert m.parse_completion_response(link.exchange(over), DIALECT).response_code == "13"
    stranger = _completion(m.Original("000777", "0101000000", rrn="000000000777", auth_code="777777"), 100,
                           stan=3)
    assert m.parse_completion_response(link.exchange(stranger), DIALECT).response_code == "25"
    assert host.settled_total == 0


def test_field_out_of_format_is_refused(host: AcquirerHost) -> None:
    """The host parses strictly by the spec: an 0100 with field 53 as the old binary LLVAR KSN, or a field
    the spec does not use, or a mandatory field missing, gets a format error."""
    raw = m.preauth_request(terminal=TERMINAL, card=CARD, amount=15000, stan=4, when=WHEN,
                            icc_tlv=card_icc("visa_cvn18", 15000)[0], dialect=DIALECT)
    doc = m.decode(raw, DIALECT)
    old_53 = {**doc, "53": "FFFF9876543210E00001"}
    wire, _ = iso8583.encode(old_53, {**DIALECT.full_spec(),
                                      "53": {"data_enc": "b", "len_enc": "ascii", "len_type": 2,
                                             "max_len": 12, "desc": "KSN, the old way"}})
    assert host.handle(bytes(wire)) is None     # a 1987 parser cannot even find field 11: no answer
    assert host.decisions[-1]["code"] == "30" and host.decisions[-1]["reason"] == "format error: 53"
    bad = raw.replace(b"5542", b"55X2", 1)
    assert m.decode(host.handle(bad) or b"", DIALECT)["39"] == "30"
    lacking = {k: v for k, v in doc.items() if k not in ("61", "p")}
    short = m.encode(lacking, DIALECT)
    assert m.decode(host.handle(short) or b"", DIALECT)["39"] == "30"
    assert not host.requests and all(d["code"] == "30" for d in host.decisions)


def test_magstripe_needs_no_cryptogram(link: AcquirerLink) -> None:
    card = m.Card(pan="9999000011112222", expiry="2812", entry_mode="902", track2="9999000011112222=2812201")
    raw = m.preauth_request(terminal=TERMINAL, card=card, amount=5000, stan=9, when=WHEN,
                            dialect=DIALECT)
    result = m.parse_preauth_response(link.exchange(raw), DIALECT)
    assert result.approved and result.icc_response_tlv == b""


def test_undecodable_request_gets_no_answer(link: AcquirerLink, host: AcquirerHost) -> None:
    assert host.handle(b"garbage-garbage") is None


def test_reversal_of_a_request_it_never_answered_is_acknowledged(link: AcquirerLink, host: AcquirerHost,
                                                                 rules: Rules) -> None:
    """The 0110 never came (the terminal reverses with 68): nothing was held, the 0420 is still taken."""
    rules.next = "timeout"
    with pytest.raises(HostUnavailable):
        preauth(link, timeout=0.3)
    rules.next = "approve"
    never = m.Original("000001", WHEN.strftime("%m%d%H%M%S"))
    back = m.reversal_advice(terminal=TERMINAL, card=CARD, original=never, amount=15000,
                             reason=m.ReversalReason.TIMEOUT, stan=2, when=WHEN, dialect=DIALECT)
    assert m.parse_reversal_response(link.exchange(back), DIALECT).acknowledged
    assert host.releases == {} and host.approved == {}            # nothing was held, nothing released


def test_partial_approval_only_for_a_terminal_that_says_it_takes_one(link: AcquirerLink, host: AcquirerHost,
                                                                     rules: Rules) -> None:
    """Defect: the 0100 did not flag partial approval; without the flag an issuer declines instead."""
    rules.next = "partial:6000"
    raw = m.preauth_request(terminal=TERMINAL, card=CARD, amount=15000, stan=7, when=WHEN,
                            icc_tlv=card_icc("visa_cvn18", 15000)[0], dialect=DIALECT)
    unflagged = m.encode({**m.decode(raw, DIALECT), "48": "R"}, DIALECT)
    result = m.parse_preauth_response(link.exchange(unflagged), DIALECT)
    assert not result.approved and result.response_code == "51"
    assert host.decisions[-1]["reason"] == "partial approval not flagged as supported"
    assert m.parse_preauth_response(link.exchange(raw), DIALECT).partial     # flagged: 10, part approved
