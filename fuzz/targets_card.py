"""Fuzz targets for what a card answers: BER-TLV, the EMV response parsers, the fleet card, certificates,
and the simulated cards' command parsers. Card answers end in CardError (EMV Book 3: a malformed answer
ends the application), never in another exception."""

from __future__ import annotations

import datetime as dt
from typing import Any

from contracts.errors import CardError, MessageError
from firmware import tlv
from firmware.emv import AidConfig, EmvConfig, PinInput, certs, run_transaction
from firmware.emv.action import Cryptogram
from firmware.emv.apdu import exchange, single_template
from firmware.emv.data import DataStore, build_dol, parse_dol
from firmware.emv.genac import request_ac
from firmware.emv.issuer import IssuerResponse, run_scripts
from firmware.emv.records import initiate, parse_afl, read_application_data
from firmware.emv.select import build_candidate_list, final_select, select_ppse
from firmware.programs.fleet.card import FLEET_AID, read_fleet_card
from fuzz.harness import SEP, Target, Violation, parts

__all__ = ["TARGETS"]

t = tlv.encode
OK = b"\x90\x00"
VISA = bytes.fromhex("A0000000031010")
NOW = dt.datetime(2025, 6, 15, 12, 0)
FCI = t(0x6F, t(0x84, VISA) + t(0xA5, t(0x50, b"VISA") + t(0x87, b"\x01") + t(0x9F38, b"\x9f\x02\x06")))
RECORD = t(0x70, t(0x5A, bytes.fromhex("4761739001010010")) + t(0x5F24, bytes.fromhex("301231"))
           + t(0x8C, bytes.fromhex("9F02069F3704")) + t(0x8D, bytes.fromhex("8A02")))
GPO1 = t(0x80, bytes.fromhex("1800") + bytes.fromhex("08010100"))
GPO2 = t(0x77, t(0x82, b"\x18\x00") + t(0x94, bytes.fromhex("08010100")))
GENAC1 = t(0x80, b"\x80\x00\x01" + bytes(8) + bytes.fromhex("0601"))
SCRIPT = t(0x71, t(0x9F18, b"\x00\x00\x00\x01") + t(0x86, bytes.fromhex("841E000000")))
FLEET_RECORD = t(0x70, t(0x5A, bytes.fromhex("7083000000000000009F")) + t(0x5F24, b"\x30\x12\x31")
                 + t(0x5F20, b"FUZZ"))
COMMANDS = [bytes.fromhex(h) for h in ("00A404000E315041592E5359532E444446303100",
                                       "00A4040007A000000003101000", "80A8000002830000", "00B2010C00")]
GENAC2 = t(0x77, t(0x9F27, b"\x80") + t(0x9F36, b"\x00\x01") + t(0x9F26, bytes(8)) + t(0x9F10, b"\x06\x01"))


# A card may legitimately ask for 63 AFL entries (tag 94 holds at most 252 bytes) of up to 255 records each
# (Book 3 10.2): more commands than that plus selection is a loop the card keeps going.
MAX_COMMANDS = 63 * 255 + 100


class Card:
    """Answers each command with the answer scripted for its instruction byte (6D00 when none)."""

    def __init__(self, answers: dict[int, bytes]) -> None:
        self.answers = answers
        self.sent = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.sent += 1
        if self.sent > MAX_COMMANDS:
            raise Violation("more commands than any AFL can ask for: a loop the card controls")
        return self.answers.get(apdu[1], b"\x6d\x00")


def tlv_parse(data: bytes) -> None:
    """parse, parse_unique, find; re-encoding what parse gave parses to the same objects."""
    objects = tlv.parse(data)
    again = b"".join(t(tag, value) for tag, value in objects)
    if tlv.parse(again) != objects:
        raise Violation("parse(encode(parse(x))) != parse(x)")
    tlv.find(data, 0x9F36)
    try:
        tlv.parse_unique(data)
    except MessageError:
        pass


def emv_dol(data: bytes) -> None:
    store = DataStore()
    store.set(0x9F02, bytes(6))
    out = build_dol(data, store)
    if len(out) != sum(length for _, length in parse_dol(data)):
        raise Violation("DOL data length differs from the DOL")


def emv_afl(data: bytes) -> None:
    for entry in parse_afl(data):
        if not (1 <= entry.sfi <= 30 and 1 <= entry.first <= entry.last and entry.oda_count <= 255):
            raise Violation("AFL entry out of range")


def emv_gpo(data: bytes) -> None:
    """GET PROCESSING OPTIONS answer, format 1 (80) or 2 (77), then its AFL (Book 3 6.5.8.4)."""
    initiate(Card({0xA8: data}), DataStore(), b"")


def emv_records(data: bytes) -> None:
    """READ RECORD answers for the AFL the first four bytes give (Book 3 10.2)."""
    afl = parse_afl(data[:4])
    read_application_data(Card({0xB2: data[4:]}), DataStore(), afl)


def emv_genac(data: bytes) -> None:
    """GENERATE AC answer (Book 3 6.5.5); the first byte asks for CDA."""
    cda = bool(data[:1]) and data[0] & 1 == 1
    request_ac(Card({0xAE: data[1:]}), DataStore(), Cryptogram.ARQC, b"", cda=cda, step="generate_ac_1")


def emv_select(data: bytes) -> None:
    """FCI of the final SELECT, and the candidate list from PSE directory records (Book 1 12)."""
    final, pse, record = parts(data, 3)
    for select in (lambda: final_select(Card({0xA4: final}), VISA), lambda: select_ppse(Card({0xA4: pse}))):
        try:
            select()
        except CardError:
            pass
    build_candidate_list(Card({0xA4: pse, 0xB2: record}), (AidConfig(VISA),))


def _pin(kind: str, tries: int | None, pan: str) -> PinInput:
    return PinInput(online_block=b"\x00" * 8) if kind == "online" else PinInput()


def emv_kernel(data: bytes) -> None:
    """The whole kernel up to the first GENERATE AC with every answer fuzzed."""
    sel, gpo, rec, genac, get_data = parts(data, 5)
    card = Card({0xA4: sel, 0xA8: gpo, 0xB2: rec, 0xAE: genac, 0xCA: get_data})
    run_transaction(card, EmvConfig(aids=(AidConfig(VISA),)), 100, pin_entry=_pin, online=True, now=NOW)


def apdu_response(data: bytes) -> None:
    resp = exchange(Card({0xB2: data}), bytes.fromhex("00B2010C00"), "read_record")
    single_template(resp.data, "read_record", 0x70, 0x77)


def issuer_response(data: bytes) -> None:
    """Field 55 of the host's answer (91, 71/72 scripts) and the scripts run against a card."""
    icc, answers = parts(data, 2)
    response = IssuerResponse.from_icc_data(b"00", icc)
    for final in (False, True):
        for result in run_scripts(Card({0x1E: answers, 0xDA: answers}), DataStore(), response.scripts,
                                  final=final):
            if len(result) != 5:
                raise Violation("script result is not 5 bytes")


def emv_certs(data: bytes) -> None:
    """Certificate parsing after RSA recovery: an exponent-1 key makes the recovered block the input
    itself, so the fields (Book 2 tables 6, 14, 17) are fuzzed directly. Failures are None, not errors."""
    size = 64 + (data[0] % 8) * 16 if data else 64
    block = data[1:1 + size].ljust(size, b"\x00")
    key = certs.PublicKey((1 << (8 * size)) - 1, 1)
    today = NOW.date()
    certs.recover_issuer_key(block, data[size:size + 40], b"\x03", key, "4761739001010010", today)
    certs.recover_icc_key(block, data[size:size + 40], b"\x03", key, "4761739001010010", b"", today)
    certs.sda_data_auth_code(block, key, b"")
    certs.signed_dynamic_data(block, key, b"")


def _cert_seed() -> bytes:
    body = bytes([0x6A, 0x02]) + bytes.fromhex("476173FF") + bytes.fromhex("1230") + bytes(3)
    body += bytes([0x01, 0x01, 30, 1]) + bytes(64 - 15 - 21)
    return b"\x00" + body + bytes(20) + b"\xbc"


def fleet_card(data: bytes) -> None:
    select, record = parts(data, 2)
    card = read_fleet_card(Card({0xA4: select, 0xB2: record}))
    card.expired(NOW.date())


_CARDS: dict[str, Any] = {}


def card_emulators(data: bytes) -> None:
    """The simulated EMV and fleet cards answer any command sequence with data and a status word."""
    if not _CARDS:
        from hostsim.cards.emv import EmvCard
        from hostsim.cards.fleet import FleetCard
        _CARDS["emv"] = EmvCard.from_profile("visa_dda_online_pin")
        _CARDS["fleet"] = FleetCard(pan="7083000000000000009", expiry="3012", holder="FUZZ")
    for card in _CARDS.values():
        card.reset()
        for command in data.split(SEP)[:16]:
            if len(card.apdu(command)) < 2:
                raise Violation("card answer without a status word")


def _kernel_seeds() -> list[bytes]:
    return [SEP.join([FCI + OK, GPO1 + OK, RECORD + OK, GENAC1 + OK, b"\x9f\x36\x02\x00\x01" + OK]),
            SEP.join([FCI + OK, GPO2 + OK, RECORD + OK, GENAC2 + OK, b"\x6a\x88"])]


def _select_seeds() -> list[bytes]:
    pse = t(0x6F, t(0x84, b"1PAY.SYS.DDF01") + t(0xA5, t(0x88, b"\x01")))
    rec = t(0x70, t(0x61, t(0x4F, VISA) + t(0x50, b"VISA") + t(0x87, b"\x81")))
    return [SEP.join([FCI + OK, pse + OK, rec + OK])]


TARGETS = [
    Target("tlv", tlv_parse, (MessageError,), lambda: [RECORD, FCI, GPO2, GENAC2], max_len=1024),
    Target("emv_dol", emv_dol, (CardError,), lambda: [bytes.fromhex("9F02069F37049F1A0295055F2A029A039C01")],
           max_len=256),
    Target("emv_afl", emv_afl, (CardError,), lambda: [bytes.fromhex("0801010010010301")], max_len=256),
    Target("emv_gpo", emv_gpo, (CardError,), lambda: [GPO1 + OK, GPO2 + OK], max_len=1030),
    Target("emv_records", emv_records, (CardError,), lambda: [bytes.fromhex("08010100") + RECORD + OK],
           max_len=1030),
    Target("emv_genac", emv_genac, (CardError,), lambda: [b"\x00" + GENAC1 + OK, b"\x01" + GENAC2 + OK],
           max_len=1030),
    Target("emv_select", emv_select, (CardError,), _select_seeds, max_len=2048),
    Target("emv_kernel", emv_kernel, (CardError,), _kernel_seeds, max_len=2048),
    Target("apdu_response", apdu_response, (CardError,), lambda: [RECORD + OK], max_len=1030),
    Target("issuer_response", issuer_response, (CardError,),
           lambda: [t(0x91, bytes(10)) + SCRIPT + SEP + OK], max_len=1024),
    Target("emv_certs", emv_certs, (), lambda: [_cert_seed()], max_len=512),
    Target("fleet_card", fleet_card, (CardError,),
           lambda: [SEP.join([t(0x6F, t(0x84, FLEET_AID)) + OK, FLEET_RECORD + OK])], max_len=1024),
    Target("card_emulators", card_emulators, (),
           lambda: [SEP.join([*COMMANDS, bytes.fromhex("00A4040008") + FLEET_AID + b"\x00"])], max_len=2048),
]
