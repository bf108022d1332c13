"""The virtual EMV cards, driven APDU by APDU through MemoryReader by a minimal terminal written here.

The terminal side (certificate recovery, static data, CDA hash, enciphered PIN, ARQC/ARPC via pyemv from the
IMK) is re-derived from EMV 4.3 Books 2 and 3 in this file, independently of hostsim.emv_keys, so a passing
test means the card's PKI and cryptograms are what a conforming kernel expects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tomllib
from typing import Any

import pyemv.cvn
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ConfigError
from drivers.cardreader import MemoryReader
from firmware.tlv import find, parse
from hostsim import emv_host_crypto, emv_keys
from hostsim.cards.emv import EmvCard
from hostsim.cards.emv_profile import load_profile, parse_dol

# pyemv builds TripleDES from cryptography's main module, deprecated there (pyproject pins cryptography<48).
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

PSE = b"1PAY.SYS.DDF01"
AIDS = ("A0000000031010", "A0000000041010", "A0000000043060")     # the terminal's own AID list
CHIP_PROFILES = ("visa_dda_online_pin", "mc_cda_offline_pin", "expired", "pin_blocked")
CVN = {"visa_cvn10": pyemv.cvn.VisaCVN10, "visa_cvn18": pyemv.cvn.VisaCVN18,
       "mc_cvn16": pyemv.cvn.MasterCardCVN16}
OK = b"\x90\x00"


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes | None = None, le: bool = True) -> bytes:
    body = b"" if data is None else bytes([len(data)]) + data
    return bytes([cla, ins, p1, p2]) + body + (b"\x00" if le else b"")


def raw_tlvs(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, value, encoded bytes) one level deep: CDA hashes the response TLVs exactly as sent."""
    out, i = [], 0
    while i < len(data):
        start, tag = i, data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while data[i] & 0x80:
                tag, i = (tag << 8) | data[i], i + 1
            tag, i = (tag << 8) | data[i], i + 1
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            length, i = int.from_bytes(data[i:i + count], "big"), i + count
        out.append((tag, data[i:i + length], data[start:i + length]))
        i += length
    return out


def recover(key: tuple[int, int], block: bytes) -> bytes:
    """RSA recovery (Book 2 A2.1): raw public-key operation, the block as long as the modulus."""
    n, e = key
    size = (n.bit_length() + 7) // 8
    assert len(block) == size
    recovered = pow(int.from_bytes(block, "big"), e, n).to_bytes(size, "big")
    assert recovered[0] == 0x6A and recovered[-1] == 0xBC
    return recovered


def check_hash(recovered: bytes, extra: bytes) -> None:
    assert recovered[-21:-1] == hashlib.sha1(recovered[1:-21] + extra).digest()


def mmyy_not_expired(mmyy: bytes) -> bool:
    month, year = int(mmyy[:1].hex()), 2000 + int(mmyy[1:].hex())
    return (year, month) >= (dt.date.today().year, dt.date.today().month)


class Terminal:
    """Just enough of an EMV kernel to drive the card."""

    def __init__(self, profile_name: str) -> None:
        self.profile = load_profile(profile_name)
        self.card = EmvCard(self.profile)
        self.reader = MemoryReader(self.card)
        self.atr = self.reader.connect()
        self.objects: dict[int, bytes] = {}
        self.static_data = b""
        self.pdol_data = b""
        self.cdol1_data = b""
        self.aid = b""
        today = dt.date.today()
        self.values: dict[int, bytes] = {
            0x9F02: bytes.fromhex("000000004250"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0276"),
            0x95: bytes(5), 0x5F2A: bytes.fromhex("0978"), 0x9A: bytes.fromhex(today.strftime("%y%m%d")),
            0x9C: b"\x00", 0x9F37: os.urandom(4), 0x9F35: b"\x25", 0x9F40: bytes.fromhex("6000F0A001"),
            0x9F45: bytes(2), 0x9F4C: bytes(8), 0x9F34: bytes.fromhex("1F0302"), 0x8A: b"00", 0x91: bytes(10)}

    def send(self, command: bytes) -> tuple[bytes, bytes]:
        response = self.reader.transmit(command)
        return response[:-2], response[-2:]

    def dol(self, dol: bytes) -> bytes:
        return b"".join(self.values.get(tag, bytes(length)).ljust(length, b"\x00")[:length]
                        for tag, length in parse_dol(dol))

    # -- application selection (Book 1 12.3) -------------------------------------------------------
    def select(self) -> bytes:
        fci, sw = self.send(apdu(0x00, 0xA4, 0x04, 0x00, PSE))
        if sw == OK:
            sfi = find(fci, 0x88)
            assert sfi is not None
            record, sw = self.send(apdu(0x00, 0xB2, 1, (sfi[0] << 3) | 4))
            assert sw == OK
            aids = [find(record, 0x4F)]
            assert self.send(apdu(0x00, 0xB2, 2, (sfi[0] << 3) | 4))[1] == b"\x6a\x83"
        else:
            assert sw == b"\x6a\x82"
            aids = [bytes.fromhex(a) for a in AIDS]
        for aid in aids:
            assert aid is not None
            fci, sw = self.send(apdu(0x00, 0xA4, 0x04, 0x00, aid))
            if sw in (OK, b"\x62\x83"):
                assert find(fci, 0x84) == aid
                self.aid = aid
                return fci
        raise AssertionError("no application selected")

    def gpo(self, fci: bytes) -> tuple[bytes, bytes]:
        self.pdol_data = self.dol(find(fci, 0x9F38) or b"")
        data, sw = self.send(apdu(0x80, 0xA8, 0, 0, b"\x83" + bytes([len(self.pdol_data)]) + self.pdol_data))
        assert sw == OK
        (tag, value), = parse(data)
        if tag == 0x80:
            return value[:2], value[2:]
        return find(data, 0x82) or b"", find(data, 0x94) or b""

    def read_records(self, aip: bytes, afl: bytes) -> None:
        """Book 3 10.2 and 10.3: read every AFL record, collect the static data to be authenticated."""
        static = bytearray()
        for i in range(0, len(afl), 4):
            sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for number in range(first, last + 1):
                record, sw = self.send(apdu(0x00, 0xB2, number, (sfi << 3) | 4))
                assert sw == OK and record[0] == 0x70
                (_, body), = parse(record)
                if number < first + oda:
                    static += body if sfi <= 10 else record
                for tag, value in parse(body):
                    assert tag not in self.objects, f"{tag:X} twice"
                    self.objects[tag] = value
        if self.objects.get(0x9F4A) == b"\x82":
            static += aip
        self.static_data = bytes(static)

    def prepare(self) -> tuple[bytes, bytes, bytes]:
        fci = self.select()
        aip, afl = self.gpo(fci)
        self.read_records(aip, afl)
        return fci, aip, afl

    # -- offline data authentication (Book 2 5 and 6) ----------------------------------------------
    def issuer_key(self) -> tuple[int, int]:
        ca = emv_keys.ca_public_keys()[(self.aid[:5].hex().upper(), self.objects[0x8F][0])]
        n_ca = (ca[0].bit_length() + 7) // 8
        rec = recover(ca, self.objects[0x90])
        check_hash(rec, self.objects.get(0x92, b"") + self.objects[0x9F32])
        assert rec[1] == 0x02 and rec[11:13] == b"\x01\x01"
        pan = self.objects[0x5A].hex().upper().rstrip("F")
        assert pan.startswith(rec[2:6].hex().upper().rstrip("F"))
        assert mmyy_not_expired(rec[6:8])
        n_i, leftmost = rec[13], rec[15:15 + n_ca - 36]
        modulus = (leftmost + self.objects.get(0x92, b""))[:n_i]
        assert rec[14] == len(self.objects[0x9F32])
        return int.from_bytes(modulus, "big"), int.from_bytes(self.objects[0x9F32], "big")

    def icc_key(self) -> tuple[int, int]:
        issuer = self.issuer_key()
        n_i = (issuer[0].bit_length() + 7) // 8
        rec = recover(issuer, self.objects[0x9F46])
        check_hash(rec, self.objects.get(0x9F48, b"") + self.objects[0x9F47] + self.static_data)
        assert rec[1] == 0x04 and rec[2:12] == self.objects[0x5A].ljust(10, b"\xff")
        assert rec[12:14] == bytes([self.objects[0x5F24][1], self.objects[0x5F24][0]])   # MMYY of YYMMDD
        assert mmyy_not_expired(rec[12:14]) and rec[17:19] == b"\x01\x01"
        n_ic = rec[19]
        modulus = (rec[21:21 + n_i - 42] + self.objects.get(0x9F48, b""))[:n_ic]
        return int.from_bytes(modulus, "big"), int.from_bytes(self.objects[0x9F47], "big")

    def check_sdad(self, icc: tuple[int, int], sdad: bytes, terminal_dynamic_data: bytes) -> bytes:
        """Book 2 6.5.2: recover and check the Signed Dynamic Application Data;
        returns the ICC dynamic data."""
        rec = recover(icc, sdad)
        assert rec[1:3] == b"\x05\x01"
        check_hash(rec, terminal_dynamic_data)
        return rec[4:4 + rec[3]]

    # -- card action analysis ---------------------------------------------------------------------
    def generate_ac(self, p1: int, dol_tag: int) -> tuple[bytes, bytes, bytes]:
        data = self.dol(self.objects[dol_tag])
        if dol_tag == 0x8C:
            self.cdol1_data = data
        response, sw = self.send(apdu(0x80, 0xAE, p1, 0x00, data))
        return response, sw, data

    def cvn(self) -> Any:
        keys, card = self.profile["keys"], self.profile["card"]
        return CVN[self.profile["processing"]["cryptogram"]](
            bytes.fromhex(keys["imk_ac"]), bytes.fromhex(keys["imk_smi"]), bytes.fromhex(keys["imk_smc"]),
            card["pan"], card.get("psn", "00"))

    def expected_ac(self, values: dict[int, bytes], aip: bytes, atc: bytes, iad: bytes) -> bytes:
        """What the issuer computes from the IMK (Book 2 8.1 with the CVN's data and IAD layout)."""
        cvn = self.cvn()
        t = [values[tag] for tag in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)]
        if isinstance(cvn, pyemv.cvn.VisaCVN18):
            return bytes(cvn.generate_ac(*t, tag_82=aip, tag_9f36=atc, tag_9f10=iad))
        cvr = iad[3:7] if isinstance(cvn, pyemv.cvn.VisaCVN10) else iad[2:8]
        return bytes(cvn.generate_ac(*t, tag_82=aip, tag_9f36=atc, cvr=cvr))

    def arpc(self, arqc: bytes, atc: bytes, approve: bool = True) -> bytes:
        cvn = self.cvn()
        if isinstance(cvn, pyemv.cvn.VisaCVN18):
            csu = bytes.fromhex("00800000" if approve else "00000000")
            return bytes(cvn.generate_arpc(arqc, atc, csu)) + csu
        arc = b"00" if approve else b"05"
        return bytes(cvn.generate_arpc(arqc, arc)) + arc


def ac_fields(response: bytes) -> dict[int, bytes]:
    """CID, ATC, AC and IAD from a format 1 (80) or format 2 (77) GENERATE AC response."""
    (tag, value), = parse(response)
    if tag == 0x80:
        return {0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11], 0x9F10: value[11:]}
    return dict(parse(value))


def open_card(name: str) -> Terminal:
    return Terminal(name)


# -- PKI and fixtures -----------------------------------------------------------------------------------

def test_ca_keys_toml_matches_the_pki() -> None:
    doc = tomllib.loads(emv_keys.CA_KEYS_TOML.read_text())
    table = {(k["rid"], int(k["index"], 16)): (int(k["modulus"], 16), int(k["exponent"], 16))
             for k in doc["ca_key"]}
    assert table == emv_keys.ca_public_keys()
    assert set(table) == {("A000000003", 0x92), ("A000000004", 0xF1)}
    for key in doc["ca_key"]:
        modulus, exponent = bytes.fromhex(key["modulus"]), bytes.fromhex(key["exponent"])
        assert len(modulus) * 8 == 1408 and exponent == b"\x03"
        assert dt.date.fromisoformat(key["expiry"]) > dt.date.today()
        check = hashlib.sha1(bytes.fromhex(key["rid"]) + bytes.fromhex(key["index"]) + modulus + exponent)
        assert key["checksum"] == check.hexdigest().upper()


@pytest.mark.parametrize("name", CHIP_PROFILES)
def test_card_data_is_consistent(name: str) -> None:
    t = open_card(name)
    fci, _, _ = t.prepare()
    pan = t.objects[0x5A].hex().upper().rstrip("F")
    assert t.profile["card"]["pan"] == pan
    track2 = t.objects[0x57].hex().upper()
    assert track2.startswith(pan + "D" + t.objects[0x5F24].hex()[:4])
    assert find(fci, 0x50) == t.profile["application"]["label"].encode()
    assert find(fci, 0x5F2D) == t.profile["application"]["language"].encode()
    assert t.atr[0] == 0x3B


def test_language_preference_and_fci_discretionary_data() -> None:
    t = open_card("mc_cda_offline_pin")
    pse_fci, _ = t.send(apdu(0x00, 0xA4, 0x04, 0x00, PSE))
    assert find(pse_fci, 0x5F2D) == b"deen"
    fci = t.select()
    assert find(fci, 0x5F2D) == b"deen" and find(fci, 0x87) == b"\x01"
    assert find(fci, 0x9F38) == bytes.fromhex("9F35019F4005")
    assert find(fci, 0x42) == bytes.fromhex("541333")           # IIN inside BF0C


def test_expired_card_selected_from_the_aid_list() -> None:
    t = open_card("expired")
    assert t.send(apdu(0x00, 0xA4, 0x04, 0x00, PSE))[1] == b"\x6a\x82"
    t.prepare()
    expiry = dt.datetime.strptime(t.objects[0x5F24].hex(), "%y%m%d").date()
    assert expiry < dt.date.today()
    # a partial AID selects the application too (Book 1 12.3.3)
    assert t.send(apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A000000003")))[1] == OK
    assert t.send(apdu(0x00, 0xA4, 0x04, 0x02, bytes.fromhex("A000000003")))[1] == b"\x6a\x82"


def test_magstripe_only_card_has_no_chip_application() -> None:
    profile = load_profile("magstripe_only")
    card = EmvCard(profile)
    reader = MemoryReader(card)
    assert reader.connect()[0] == 0x3B
    for name in (PSE, *(bytes.fromhex(a) for a in AIDS)):
        assert reader.transmit(apdu(0x00, 0xA4, 0x04, 0x00, name)) == b"\x6a\x82"
    assert card.track2 == "4761739001010135=31061010000000000000"
    assert card.track1 is not None and card.track1.startswith("B4761739001010135^")
    assert "4761739001010135" not in repr(card)


# -- offline data authentication ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["visa_dda_online_pin", "mc_cda_offline_pin", "pin_blocked"])
def test_icc_certificate_chain_verifies(name: str) -> None:
    t = open_card(name)
    t.prepare()
    n, e = t.icc_key()
    assert n.bit_length() == 1024 and e in (3, 65537)
    assert 0x92 in t.objects and 0x9F48 in t.objects           # 1152-bit issuer, 1024-bit ICC: remainders


def test_tampered_static_data_breaks_the_icc_certificate() -> None:
    t = open_card("visa_dda_online_pin")
    t.prepare()
    t.static_data = t.static_data[:-1] + bytes([t.static_data[-1] ^ 1])
    with pytest.raises(AssertionError):
        t.icc_key()


def test_sda_signed_static_application_data() -> None:
    t = open_card("expired")
    _, aip, _ = t.prepare()
    assert aip[0] & 0x40 and 0x9F46 not in t.objects
    rec = recover(t.issuer_key(), t.objects[0x93])
    assert rec[1:3] == b"\x03\x01" and rec[3:5] == bytes.fromhex("DA01")
    check_hash(rec, t.static_data)


@pytest.mark.parametrize("name", ["visa_dda_online_pin", "pin_blocked"])
def test_dda_internal_authenticate(name: str) -> None:
    t = open_card(name)
    t.prepare()
    icc = t.icc_key()
    ddol = t.dol(t.objects[0x9F49])
    response, sw = t.send(apdu(0x00, 0x88, 0, 0, ddol))
    assert sw == OK
    (tag, value), = parse(response)
    sdad = value if tag == 0x80 else find(value, 0x9F4B)
    assert sdad is not None
    icc_dynamic = t.check_sdad(icc, sdad, ddol)
    assert icc_dynamic[0] == 8 and len(icc_dynamic) == 9
    other, _ = t.send(apdu(0x00, 0x88, 0, 0, ddol))
    assert other != response                                     # a fresh ICC dynamic number each time


# -- online transactions --------------------------------------------------------------------------------

def test_visa_cvn18_online_with_external_authenticate() -> None:
    t = open_card("visa_dda_online_pin")
    _, aip, _ = t.prepare()
    atc_before = t.send(apdu(0x80, 0xCA, 0x9F, 0x36))[0]
    response, sw, _ = t.generate_ac(0x80, 0x8C)
    assert sw == OK
    f = ac_fields(response)
    assert (f[0x9F27] == b"\x80"
            and int.from_bytes(f[0x9F36], "big") == int.from_bytes(atc_before[3:], "big") + 1)
    assert f[0x9F10][:3] == bytes.fromhex("060112")
    assert f[0x9F26] == t.expected_ac(t.values, aip, f[0x9F36], f[0x9F10])
    # the acquirer host's verifier agrees with the card
    icc = {**t.values, 0x82: aip, **f}
    keys, card = t.profile["keys"], t.profile["card"]
    assert emv_host_crypto.verify_arqc(bytes.fromhex(keys["imk_ac"]), card["pan"], card["psn"], icc).ok
    arpc = emv_host_crypto.issuer_authentication_data(bytes.fromhex(keys["imk_ac"]), card["pan"], card["psn"],
                                                      icc, "00")
    assert arpc == t.arpc(f[0x9F26], f[0x9F36])
    assert t.send(apdu(0x00, 0x82, 0, 0, arpc, le=False)) == (b"", OK)
    assert t.send(apdu(0x00, 0x82, 0, 0, arpc, le=False))[1] == b"\x69\x85"   # only once
    response2, sw, cdol2 = t.generate_ac(0x40, 0x8D)
    f2 = ac_fields(response2)
    assert sw == OK and f2[0x9F27] == b"\x40" and f2[0x9F36] == f[0x9F36]
    values = {**t.values, **dict(zip([tag for tag, _ in parse_dol(t.objects[0x8D])], [cdol2[0:2], cdol2[2:7],
                                                                                      cdol2[7:11]]))}
    assert f2[0x9F26] == t.expected_ac(values, aip, f2[0x9F36], f2[0x9F10])
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x13))[0] == b"\x9f\x13\x02" + f[0x9F36]
    assert t.generate_ac(0x40, 0x8D)[1] == b"\x69\x85"            # no third GENERATE AC


def test_wrong_arpc_fails_issuer_authentication_and_declines() -> None:
    t = open_card("visa_dda_online_pin")
    t.prepare()
    f = ac_fields(t.generate_ac(0x80, 0x8C)[0])
    bad = bytearray(t.arpc(f[0x9F26], f[0x9F36]))
    bad[0] ^= 0xFF
    assert t.send(apdu(0x00, 0x82, 0, 0, bytes(bad), le=False))[1] == b"\x63\x00"
    f2 = ac_fields(t.generate_ac(0x40, 0x8D)[0])
    assert f2[0x9F27] == b"\x03"                                   # AAC, reason: issuer authentication failed
    assert f2[0x9F10][4] & 0x08                                    # CVR: issuer authentication failed


def test_visa_cvn10_online_with_arpc_method_1() -> None:
    t = open_card("expired")
    _, aip, _ = t.prepare()
    f = ac_fields(t.generate_ac(0x80, 0x8C)[0])
    assert f[0x9F10][:3] == bytes.fromhex("06010A")
    assert f[0x9F26] == t.expected_ac(t.values, aip, f[0x9F36], f[0x9F10])
    assert t.send(apdu(0x00, 0x82, 0, 0, t.arpc(f[0x9F26], f[0x9F36]), le=False))[1] == OK
    assert ac_fields(t.generate_ac(0x40, 0x8D)[0])[0x9F27] == b"\x40"


def check_cda(t: Terminal, response: bytes, dol_data: bytes) -> dict[int, bytes]:
    """Book 2 6.6.2: recover the signature, compare CID, rebuild the transaction data hash."""
    (_, body), = parse(response)
    items = raw_tlvs(body)
    fields = {tag: value for tag, value, _ in items}
    assert 0x9F26 not in fields
    icc_dynamic = t.check_sdad(t.icc_key(), fields[0x9F4B], t.values[0x9F37])
    idn_len = icc_dynamic[0]
    cid, ac = icc_dynamic[1 + idn_len:2 + idn_len], icc_dynamic[2 + idn_len:10 + idn_len]
    tx_hash = icc_dynamic[10 + idn_len:30 + idn_len]
    assert cid == fields[0x9F27]
    returned = b"".join(raw for tag, _, raw in items if tag != 0x9F4B)
    assert tx_hash == hashlib.sha1(t.pdol_data + dol_data + returned).digest()
    return {**fields, 0x9F26: ac}


def test_mastercard_cda_online_with_arpc_in_second_generate_ac() -> None:
    t = open_card("mc_cda_offline_pin")
    _, aip, _ = t.prepare()
    assert aip[0] & 0x01 and len(t.pdol_data) == 6
    response, sw, cdol1 = t.generate_ac(0x80 | 0x10, 0x8C)
    assert sw == OK
    f = check_cda(t, response, cdol1)
    # M/Chip 4 CVR (IAD bytes 3-8): byte 2 b7 "CDA returned in first GENERATE AC"
    assert f[0x9F27] == b"\x80" and f[0x9F10][:2] == b"\x01\x10" and f[0x9F10][3] == 0x40
    assert f[0x9F26] == t.expected_ac(t.values, aip, f[0x9F36], f[0x9F10])
    t.values[0x91] = t.arpc(f[0x9F26], f[0x9F36])
    response2, sw, cdol2 = t.generate_ac(0x40 | 0x10, 0x8D)
    f2 = check_cda(t, response2, cdol1 + cdol2)
    assert f2[0x9F27] == b"\x40" and f2[0x9F36] == f[0x9F36]
    assert f2[0x9F10][3] == 0x40 | 0x20 | 0x10        # CDA in 1st and 2nd GENERATE AC, issuer auth performed
    assert f2[0x9F26] == t.expected_ac(t.values, aip, f2[0x9F36], f2[0x9F10])


def test_mastercard_offline_tc_with_cda_and_signed_aac() -> None:
    t = open_card("mc_cda_offline_pin")
    t.prepare()
    response, sw, cdol1 = t.generate_ac(0x40 | 0x10, 0x8C)
    assert sw == OK and check_cda(t, response, cdol1)[0x9F27] == b"\x40"
    t2 = open_card("mc_cda_offline_pin")
    t2.prepare()
    response, sw, cdol1 = t2.generate_ac(0x00 | 0x10, 0x8C)      # an AAC requested with CDA is signed (9F4B)
    fields = check_cda(t2, response, cdol1)
    assert sw == OK and fields[0x9F27] == b"\x00" and 0x9F4B in fields
    t3 = open_card("mc_cda_offline_pin")
    t3.prepare()
    assert 0x9F4B not in ac_fields(t3.generate_ac(0x00, 0x8C)[0])  # no CDA asked: the AC in the clear


def mchip4_cvr(iad: bytes) -> dict[str, int]:
    """Decode the CVR of an M/Chip 4 IAD (DKI, CVN '10', CVR 6 bytes): the bits these tests look at."""
    assert iad[1] == 0x10
    c = iad[2:8]
    return {"ac2": c[0] >> 6, "ac1": (c[0] >> 4) & 3, "offline_pin": c[0] >> 2 & 1,
            "enciphered": c[0] >> 1 & 1, "pin_ok": c[0] & 1, "dda": c[1] >> 7, "cda1": c[1] >> 6 & 1,
            "issuer_auth": c[1] >> 4 & 1,
            "scripts": c[2] >> 4, "pin_tries": c[2] & 0x0F, "pin_not_performed": c[3] >> 5 & 1,
            "pin_failed": c[3] >> 4 & 1, "ptl_exceeded": c[3] >> 3 & 1, "issuer_auth_failed": c[4] >> 2 & 1,
            "script_received": c[4] >> 1 & 1, "rfu": c[5]}


def test_mchip_cvr_of_a_pin_blocked_card_uses_the_cvn_10_layout() -> None:
    """Before: byte 3 read "script counter 4" and byte 2 "issuer authentication performed" for a PTL card."""
    t = open_card("pin_blocked")
    t.prepare()
    cvr = mchip4_cvr(ac_fields(t.generate_ac(0x80, 0x8C)[0])[0x9F10])
    assert cvr == {"ac2": 2, "ac1": 0, "offline_pin": 0, "enciphered": 0, "pin_ok": 0, "dda": 0, "cda1": 0,
                   "issuer_auth": 0, "scripts": 0, "pin_tries": 0, "pin_not_performed": 1, "pin_failed": 0,
                   "ptl_exceeded": 1, "issuer_auth_failed": 0, "script_received": 0, "rfu": 0}


def test_mchip_cvr_after_offline_enciphered_pin() -> None:
    t = open_card("mc_cda_offline_pin")
    t.prepare()
    challenge = t.send(apdu(0x00, 0x84, 0, 0))[0]
    assert t.send(apdu(0x00, 0x20, 0x00, 0x88, enciphered_pin(t, "1234", challenge), le=False))[1] == OK
    cvr = mchip4_cvr(ac_fields(t.generate_ac(0x80, 0x8C)[0])[0x9F10])
    assert (cvr["ac1"], cvr["offline_pin"], cvr["enciphered"], cvr["pin_ok"]) == (2, 1, 1, 1)
    assert cvr["pin_tries"] == 3
    assert (cvr["pin_not_performed"], cvr["pin_failed"], cvr["ptl_exceeded"], cvr["scripts"]) == (0, 0, 0, 0)


def test_atc_increments_once_per_transaction_and_survives_power_cycles() -> None:
    t = open_card("visa_dda_online_pin")
    atcs = []
    for _ in range(3):
        t.reader.disconnect()
        t.reader.connect()
        t.objects.clear()
        t.prepare()
        atcs.append(int.from_bytes(ac_fields(t.generate_ac(0x80, 0x8C)[0])[0x9F36], "big"))
    assert atcs == [17, 18, 19]


# -- cardholder verification ---------------------------------------------------------------------------

def plain_pin_block(pin: str) -> bytes:
    digits = f"2{len(pin):X}{pin}"
    return bytes.fromhex(digits.ljust(16, "F"))


def enciphered_pin(t: Terminal, pin: str, challenge: bytes) -> bytes:
    """Book 2 7.2: 7F || PIN block || ICC unpredictable number || random pad, under the ICC public key."""
    n, e = t.icc_key()
    size = (n.bit_length() + 7) // 8
    block = b"\x7f" + plain_pin_block(pin) + challenge + os.urandom(size - 17)
    return pow(int.from_bytes(block, "big"), e, n).to_bytes(size, "big")


def test_enciphered_offline_pin() -> None:
    t = open_card("mc_cda_offline_pin")
    t.prepare()
    assert t.objects[0x8E][8:10] == bytes.fromhex("4403")
    assert t.send(apdu(0x00, 0x20, 0x00, 0x88, enciphered_pin(t, "1234", bytes(8)),
                       le=False))[1] == b"\x69\x85"
    challenge, sw = t.send(apdu(0x00, 0x84, 0, 0))
    assert sw == OK and len(challenge) == 8
    wrong = enciphered_pin(t, "9999", challenge)
    assert t.send(apdu(0x00, 0x20, 0x00, 0x88, wrong, le=False))[1] == b"\x63\xc2"
    replay = t.send(apdu(0x00, 0x20, 0x00, 0x88, wrong, le=False))[1]
    assert replay == b"\x69\x85"                                      # the challenge is single-use
    challenge = t.send(apdu(0x00, 0x84, 0, 0))[0]
    assert t.send(apdu(0x00, 0x20, 0x00, 0x88, enciphered_pin(t, "1234", challenge), le=False))[1] == OK
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x17))[0] == b"\x9f\x17\x01\x03"


def test_plaintext_pin_try_counter_blocks_at_zero() -> None:
    t = open_card("visa_dda_online_pin")
    t.prepare()
    verify = apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("0000"), le=False)
    assert [t.send(verify)[1] for _ in range(4)] == [b"\x63\xc2", b"\x63\xc1", b"\x63\xc0", b"\x69\x83"]
    right = apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("1234"), le=False)
    assert t.send(right)[1] == b"\x69\x83"
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x17))[0] == b"\x9f\x17\x01\x00"
    f = ac_fields(t.generate_ac(0x80, 0x8C)[0])
    assert f[0x9F27] == b"\x02"                                       # AAC, reason: PIN try limit exceeded


def test_correct_pin_resets_the_counter() -> None:
    t = open_card("visa_dda_online_pin")
    t.prepare()
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("4321"), le=False))[1] == b"\x63\xc2"
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("1234"), le=False))[1] == OK
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, le=False))[1] == b"\x63\xc3"
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, bytes.fromhex("2412340000FFFFFF"), le=False))[1] == b"\x6a\x80"


def test_pin_blocked_card() -> None:
    t = open_card("pin_blocked")
    _, aip, _ = t.prepare()
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x17))[0] == b"\x9f\x17\x01\x00"
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("1234"), le=False))[1] == b"\x69\x83"
    response, sw, _ = t.generate_ac(0x80, 0x8C)
    f = ac_fields(response)
    assert sw == OK and f[0x9F27] == b"\x02" and 0x9F4B not in f
    assert f[0x9F26] == t.expected_ac(t.values, aip, f[0x9F36], f[0x9F10])
    assert t.generate_ac(0x00, 0x8D)[1] == b"\x69\x85"


# -- issuer scripts --------------------------------------------------------------------------------------

def script(t: Terminal, ins: int, p1: int, p2: int, body: bytes, f: dict[int, bytes]) -> bytes:
    header = bytes([0x84, ins, p1, p2, len(body) + 8])
    mac = t.cvn().generate_command_mac(header, f[0x9F26], f[0x9F36], body)
    return header + body + bytes(mac)


@pytest.mark.parametrize("name", ["visa_dda_online_pin", "mc_cda_offline_pin"])
def test_application_block_script(name: str) -> None:
    t = open_card(name)
    t.prepare()
    assert t.send(script(t, 0x1E, 0, 0, b"", {0x9F26: bytes(8), 0x9F36: bytes(2)}))[1] == b"\x69\x85"
    f = ac_fields(t.generate_ac(0x80, 0x8C)[0])                      # ARQC without CDA: 9F26 in the clear
    bad = bytearray(script(t, 0x1E, 0, 0, b"", f))
    bad[-1] ^= 1
    assert t.send(bytes(bad))[1] == b"\x69\x88"
    assert t.send(script(t, 0x1E, 0, 0, b"", f))[1] == OK
    f2 = ac_fields(t.generate_ac(0x40, 0x8D)[0])
    assert f2[0x9F27][0] & 0xC0 == 0x00
    t.reader.disconnect()
    t.reader.connect()
    fci, sw = t.send(apdu(0x00, 0xA4, 0x04, 0x00, t.aid))
    if t.card.protocol == 0:                     # T=0: the warning alone, the FCI by GET RESPONSE
        assert (fci, sw) == (b"", b"\x62\x83")
        fci, sw2 = t.send(apdu(0x00, 0xC0, 0x00, 0x00))
        assert sw2 == OK
    assert sw == b"\x62\x83" and find(fci, 0x84) == t.aid
    assert t.send(apdu(0x80, 0xA8, 0, 0, b"\x83\x00"))[1] == b"\x69\x85"


def test_put_data_and_pin_unblock_scripts() -> None:
    t = open_card("visa_dda_online_pin")
    t.prepare()
    for _ in range(3):
        t.send(apdu(0x00, 0x20, 0x00, 0x80, plain_pin_block("0000"), le=False))
    f = ac_fields(t.generate_ac(0x80, 0x8C)[0])
    assert t.send(script(t, 0xDA, 0x9F, 0x14, b"\x05", f))[1] == OK
    assert t.send(script(t, 0xDA, 0x9F, 0x99, b"\x05", f))[1] == b"\x6a\x88"
    assert t.send(script(t, 0x24, 0, 0, b"", f))[1] == OK
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x14))[0] == b"\x9f\x14\x01\x05"
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x17))[0] == b"\x9f\x17\x01\x03"


# -- hostile and malformed commands -----------------------------------------------------------------------

@pytest.mark.parametrize(("command", "sw"), [
    ("00", "6700"), ("00A404", "6700"), ("00A4040007A000000003", "6700"), ("00A40400", "6700"),
    ("00FF000000", "6D00"), ("B0A4040007A000000003101000", "6E00"), ("80A4040007A000000003101000", "6E00"),
    ("00A4040007A000000099999900", "6A82"), ("00A4010007A000000003101000", "6A86"),
    ("80A8000002830000", "6985"), ("80AE80001D" + "00" * 29 + "00", "6985"), ("00B2010C00", "6985"),
    ("0082000008" + "00" * 8, "6985"), ("0084000100", "6A86"),
    ("00C0000000", "6985"),                       # T=0 card, GET RESPONSE with nothing held back
])
def test_hostile_commands_before_selection(command: str, sw: str) -> None:
    t = open_card("visa_dda_online_pin")
    assert t.reader.transmit(bytes.fromhex(command))[-2:] == bytes.fromhex(sw)


def test_hostile_commands_in_a_transaction() -> None:
    t = open_card("visa_dda_online_pin")
    t.select()
    assert t.send(apdu(0x80, 0xA8, 0, 0, b"\x83\x00"))[1] == b"\x67\x00"           # PDOL needs 2 bytes
    assert t.send(apdu(0x80, 0xA8, 0, 0, b"\x84\x02\x02\x76"))[1] == b"\x6a\x80"
    assert t.send(apdu(0x80, 0xA8, 0, 1, b"\x83\x02\x02\x76"))[1] == b"\x6a\x86"
    assert t.send(apdu(0x80, 0xA8, 0, 0, b"\x83\x02\x02\x76"))[1] == OK
    assert t.send(apdu(0x80, 0xA8, 0, 0, b"\x83\x02\x02\x76"))[1] == b"\x69\x85"   # GPO once
    assert t.send(apdu(0x00, 0xB2, 9, (2 << 3) | 4))[1] == b"\x6a\x83"
    assert t.send(apdu(0x00, 0xB2, 1, (9 << 3) | 4))[1] == b"\x6a\x82"
    assert t.send(apdu(0x00, 0xB2, 1, (2 << 3) | 5))[1] == b"\x6a\x86"
    assert t.send(apdu(0x80, 0xCA, 0x9F, 0x99))[1] == b"\x6a\x88"
    assert t.send(apdu(0x00, 0x20, 0x00, 0x81, plain_pin_block("1234"), le=False))[1] == b"\x6a\x86"
    assert t.send(apdu(0x00, 0x20, 0x00, 0x80, b"\x24\x12", le=False))[1] == b"\x67\x00"
    assert t.send(apdu(0x80, 0xAE, 0x80, 0x00, b"\x00" * 5))[1] == b"\x67\x00"
    assert t.send(apdu(0x80, 0xAE, 0xC0, 0x00, b"\x00" * 29))[1] == b"\x6a\x86"
    assert t.send(apdu(0x80, 0xAE, 0x81, 0x00, b"\x00" * 29))[1] == b"\x6a\x86"
    assert t.send(apdu(0x00, 0x82, 0, 0, bytes(8), le=False))[1] == b"\x69\x85"
    assert t.send(apdu(0x00, 0x88, 0, 0, b""))[1] == b"\x67\x00"
    assert t.send(bytes.fromhex("80AE8000FF") + bytes(3))[1] == b"\x67\x00"          # Lc disagrees


def test_sda_card_has_no_internal_authenticate_or_enciphered_pin() -> None:
    t = open_card("expired")
    t.prepare()
    assert t.send(apdu(0x00, 0x88, 0, 0, bytes(4)))[1] == b"\x6d\x00"
    t.send(apdu(0x00, 0x84, 0, 0))
    assert t.send(apdu(0x00, 0x20, 0x00, 0x88, bytes(128), le=False))[1] == b"\x6a\x88"


def test_profile_errors_name_the_key() -> None:
    profile = load_profile("visa_dda_online_pin")
    with pytest.raises(ConfigError, match="Luhn"):
        EmvCard({**profile, "card": {**profile["card"], "pan": "4761739001010011"}})
    with pytest.raises(ConfigError, match="AFL"):
        EmvCard({**profile, "processing": {**profile["processing"], "afl": "08010100 20010100"}})
    with pytest.raises(ConfigError, match="CDOL1"):
        EmvCard({**profile, "data": {**profile["data"], "8C": "9F02069F0306"}})


SW1_VALID = {0x61, 0x62, 0x63, 0x67, 0x69, 0x6A, 0x6D, 0x6E, 0x90}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda cla, ins, p1, p2, data: bytes([cla, ins, p1, p2, len(data)]) + data,
              st.sampled_from([0x00, 0x80, 0x84, 0xFF]),
              st.sampled_from([0xA4, 0xB2, 0xA8, 0xCA, 0x88, 0x84, 0x20, 0xAE, 0x82, 0x1E, 0x18, 0x24,
                               0xDA, 0x00]),
              st.integers(0, 255), st.integers(0, 255), st.binary(min_size=1, max_size=255))), max_size=12),
       name=st.sampled_from([*CHIP_PROFILES, "magstripe_only"]), prepared=st.booleans())
def test_arbitrary_apdus_get_a_status_word(commands: list[bytes], name: str, prepared: bool) -> None:
    card = EmvCard(_PROFILES[name])
    card.power_on()
    if prepared and name != "magstripe_only":
        fci = card.apdu(apdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(_PROFILES[name]["application"]["aid"])))
        pdol_length = sum(length for _, length in parse_dol(find(fci[:-2], 0x9F38) or b""))
        assert card.apdu(apdu(0x80, 0xA8, 0, 0, bytes([0x83, pdol_length]) + bytes(pdol_length)))[-2:] == OK
    for command in commands:
        response = card.apdu(command)
        assert len(response) >= 2 and response[-2] in SW1_VALID


_PROFILES = {name: load_profile(name) for name in (*CHIP_PROFILES, "magstripe_only")}
