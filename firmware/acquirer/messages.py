"""Acquirer messages of an automated fuel dispenser: pure builders and parsers over contracts.iso8583_spec.

The conversation: 0100 pre-authorization for the maximum fill -> 0110; after the fill either a 0220
completion advice for the dispensed amount (field 4) and the fuel sold (field 63) -> 0230, or a 0420
reversal advice -> 0430. Repeats of unacknowledged advices are 0221/0421 (ISO 8583:1987 MTI position 4:
1 = repeat), byte for byte the first send but for the MTI: same STAN, same original, same RRN. An 0800 from
the acquirer is answered with an 0810 (network_response). Where each field goes is the dialect's data.

Every error is MessageError naming a field, never echoing a value: fields hold card numbers. Advices
never carry track 2 or PIN data (track data must not be kept after authorization).

>>> t = Terminal("AFD00001", "000000000123456", "FORECOURT 1 HIGH STREET")
>>> c = Card(pan="4761739001010010", expiry="2812", entry_mode="051", pan_sequence="01")
>>> raw = preauth_request(terminal=t, card=c, amount=15000, stan=1, when=_EXAMPLE_TIME,
...                       icc_tlv=bytes.fromhex("9F2608A1B2C3D4E5F60718"))
>>> doc = decode(raw)
>>> raw[:4], doc["4"], doc["25"], doc["18"], doc["22"], doc["55"]
(b'0100', '000000015000', '06', '5542', '051', '9F2608A1B2C3D4E5F60718')
>>> doc["61"], doc["48"], doc["43"]
('1000004002', 'R610510000', 'FORECOURT 1 HIGH STREE               DEU')
>>> c
Card(pan='476173******0010', expiry='2812', entry_mode='051', pan_sequence='01')
>>> response_meaning("51")
'insufficient funds'
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts import iso8583_spec as s
from contracts.errors import MessageError
from contracts.iso8583 import DIALECT, decode, encode, network_response
from contracts.iso8583_dialect import Dialect
from firmware import tlv
from firmware.acquirer.parties import Card, FuelLine, Original, Terminal, parse_fuel

__all__ = [
    "DIALECT",
    "RESPONSE_TEXT",
    "AdviceResponse",
    "Card",
    "Dialect",
    "FuelLine",
    "Original",
    "PreauthResult",
    "ReversalReason",
    "Terminal",
    "as_repeat",
    "completion_advice",
    "decode",
    "encode",
    "network_response",
    "original_of",
    "parse_completion_response",
    "parse_fuel",
    "parse_preauth_response",
    "parse_reversal_response",
    "preauth_request",
    "response_meaning",
    "reversal_advice",
]

_EXAMPLE_TIME = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)

# ISO 8583:1987 field 39 response codes the fuel terminal acts on.
RESPONSE_TEXT: dict[str, str] = {
    "00": "approved", "05": "do not honour", "06": "error", "10": "partial approval",
    "12": "invalid transaction", "13": "invalid amount", "14": "invalid card number",
    "17": "customer cancellation", "25": "unable to locate record on file", "30": "format error",
    "51": "insufficient funds", "54": "expired card", "55": "incorrect PIN",
    "68": "response received too late", "91": "issuer or switch inoperative", "96": "system malfunction",
}

def response_meaning(code: str) -> str:
    return RESPONSE_TEXT.get(code, "unknown response code")


def original_of(request: bytes, result: PreauthResult | None = None,
                dialect: Dialect = s.DIALECT) -> Original:
    """The Original for a 0100 we sent, and (if we got one) its response."""
    doc = decode(request, dialect)
    if doc["t"] != "0100" or "11" not in doc or "7" not in doc:
        raise MessageError("not a pre-authorization request", mti=doc["t"])
    return Original(stan=doc["11"], transmission=doc["7"], rrn=result.rrn if result else None,
                    auth_code=result.auth_code if result else None,
                    acquirer_id=doc.get(dialect.role("acquirer_id"), ""))


def _common(terminal: Terminal, stan: int, when: dt.datetime, dialect: Dialect) -> dict[str, str]:
    if when.tzinfo is None:
        raise MessageError("transmission time must be timezone-aware", field="7")
    if not 0 < stan <= 999_999:
        raise MessageError("STAN out of range", field="11")
    utc = when.astimezone(dt.UTC)
    return {"3": s.PROC_GOODS_AND_SERVICES, "7": utc.strftime("%m%d%H%M%S"), "11": f"{stan:06d}",
            "12": when.strftime("%H%M%S"), "13": when.strftime("%m%d"), **terminal.fields(dialect),
            "25": s.POS_CONDITION_PREAUTH}


def _amount(value: int, fld: str) -> str:
    if not 0 <= value <= 999_999_999_999:
        raise MessageError("amount out of range", field=fld)
    return f"{value:012d}"


def _icc(doc: dict[str, str], icc_tlv: bytes | None) -> None:
    if icc_tlv:
        tlv.parse(icc_tlv)  # a malformed TLV is our bug; refuse to send it
        doc["55"] = icc_tlv.hex().upper()


def preauth_request(*, terminal: Terminal, card: Card, amount: int, stan: int, when: dt.datetime,
                    icc_tlv: bytes | None = None, pin_block: bytes | None = None, ksn: bytes | None = None,
                    pump: int | None = None, dialect: Dialect = s.DIALECT) -> bytes:
    """0100 pre-authorization for the maximum fill amount (minor units), flagged as an unattended terminal
    that takes a partial approval [MC61] [MC48]. pump: kept for callers; this acquirer has no field for it."""
    if amount <= 0:
        raise MessageError("pre-authorization amount must be positive", field="4")
    v = dialect.values
    doc = {"t": "0100", **_common(terminal, stan, when, dialect), "4": _amount(amount, "4"),
           **card.fields(with_track=True), dialect.role("pos_data"): v["pos_data_preauth"],
           dialect.role("additional_data"): v["additional_data_preauth"]}
    if card.entry_mode in s.ICC_ENTRY_MODES and not icc_tlv:
        raise MessageError("chip entry needs ICC data", field="55")
    _icc(doc, icc_tlv)
    if pin_block is not None:
        pin_field, ksn_field = dialect.role("pin_block"), dialect.role("ksn")
        if ksn is None:
            raise MessageError("PIN block without a key serial number", field=ksn_field)
        if len(pin_block) != dialect.spec[pin_field]["max_len"]:
            raise MessageError("PIN block does not fit the acquirer's PIN field", field=pin_field,
                               length=len(pin_block))
        doc[pin_field] = pin_block.hex().upper()
        doc[ksn_field] = ksn.hex().upper()
    return encode(doc, dialect)


def _advice(mti: str, *, terminal: Terminal, card: Card, original: Original, amount: int, stan: int,
            when: dt.datetime, icc_tlv: bytes | None, dialect: Dialect) -> dict[str, str]:
    v = dialect.values
    doc = {"t": mti, **_common(terminal, stan, when, dialect), "4": _amount(amount, "4"),
           **card.fields(with_track=False), "90": original.field_90(),
           dialect.role("pos_data"): v["pos_data_advice"],
           dialect.role("additional_data"): v["additional_data_advice"]}
    if original.rrn is not None:
        doc["37"] = original.rrn
    if original.auth_code is not None:
        doc["38"] = original.auth_code
    _icc(doc, icc_tlv)
    return doc


def completion_advice(*, terminal: Terminal, card: Card, original: Original, authorized_amount: int,
                      dispensed_amount: int, stan: int, when: dt.datetime, icc_tlv: bytes | None = None,
                      fuel: Iterable[FuelLine] = (), pump: int | None = None,
                      dialect: Dialect = s.DIALECT) -> bytes:
    """0220 completion: field 4 the amount dispensed, which the host settles [VAL]; field 63 what was sold."""
    if not 0 < dispensed_amount <= authorized_amount:
        raise MessageError("dispensed amount must be positive and within the authorized amount", field="4")
    lines = list(fuel)
    if not lines:
        raise MessageError("completion without fuel data", field=dialect.role("fuel"))
    if sum(line.amount for line in lines) != dispensed_amount:
        raise MessageError("fuel lines do not add up to the dispensed amount", field=dialect.role("fuel"))
    doc = _advice("0220", terminal=terminal, card=card, original=original, amount=dispensed_amount,
                  stan=stan, when=when, icc_tlv=icc_tlv, dialect=dialect)
    doc[dialect.role("fuel")] = "".join(line.encode() for line in lines)
    return encode(doc, dialect)


class ReversalReason(enum.StrEnum):
    """Why a pre-authorization is reversed; the value is the field 39 code sent in the 0420."""

    NOTHING_DISPENSED = "17"  # 1987 "customer cancellation": nozzle hung up, nothing dispensed
    TIMEOUT = "68"  # 1987 "response received too late": the 0110 never came or came late
    # No 1987 code says "card declined after issuer approval"; 06 "error", with the AAC and
    # TVR/CVR from the second GENERATE AC in field 55 telling the issuer why.
    CARD_DECLINED = "06"


def reversal_advice(*, terminal: Terminal, card: Card, original: Original, amount: int,
                    reason: ReversalReason, stan: int, when: dt.datetime, icc_tlv: bytes | None = None,
                    pump: int | None = None, dialect: Dialect = s.DIALECT) -> bytes:
    """0420 full reversal of the pre-authorization (amount = what was authorized, or requested)."""
    doc = _advice("0420", terminal=terminal, card=card, original=original, amount=amount, stan=stan,
                  when=when, icc_tlv=icc_tlv, dialect=dialect)
    doc["39"] = ReversalReason(reason).value
    return encode(doc, dialect)


def as_repeat(raw: bytes) -> bytes:
    """The repeat of an advice: 0220 -> 0221, 0420 -> 0421 (MTI position 4, 1 = repeat)."""
    if raw[:4] not in (b"0220", b"0420", b"0221", b"0421"):
        raise MessageError("only advices can be repeated", field="t")
    return raw[:3] + b"1" + raw[4:]


@dataclass(frozen=True)
class PreauthResult:
    """The 0110, reduced to what the terminal acts on."""

    approved: bool
    partial: bool
    approved_amount: int
    auth_code: str | None
    response_code: str
    rrn: str | None
    stan: str
    icc_response_tlv: bytes = b""
    issuer_auth_data: bytes | None = None  # 91
    arc: bytes | None = None  # 8A
    issuer_scripts: tuple[bytes, ...] = ()  # whole 71/72 templates, tag and length included

    @property
    def meaning(self) -> str:
        return response_meaning(self.response_code)


# The fields of a 0110/0230/0430 the terminal acts on; any other field of a response is skipped.
_READS = ("4", "11", "37", "38", "39", "54", "55")


def _expect(doc: Mapping[str, str], mti: str, *required: str) -> None:
    if doc["t"] != mti:
        raise MessageError("unexpected message type", mti=doc["t"], expected=mti)
    for key in required:
        if key not in doc:
            raise MessageError("mandatory field missing", field=key, mti=mti)


def parse_preauth_response(raw: bytes, dialect: Dialect = s.DIALECT) -> PreauthResult:
    doc = decode(raw, dialect, strict=False, reads=_READS)  # fields the terminal does not use: ignored [IFSF]
    _expect(doc, "0110", "11", "39")
    code = doc["39"]
    icc = bytes.fromhex(doc.get("55", ""))
    items = tlv.parse(icc)
    found = dict(items)
    scripts = tuple(tlv.encode(t, v) for t, v in items if t in (0x71, 0x72))
    approved = code in ("00", "08", "10", "11")    # 08 honour with identification, 11 approved (VIP)
    amount = 0
    if approved:
        _expect(doc, "0110", "4")
        amount = int(doc["4"])
        if code == "10":
            groups = [doc["54"][i:i + 20] for i in range(0, len(doc.get("54", "")), 20)]
            hits = [int(g[8:]) for g in groups if g[2:4] == s.AMOUNT_TYPE_APPROVED]
            amount = hits[0] if hits else amount
            if hits and not 0 < amount <= int(doc["4"]):
                raise MessageError("partial approval amount out of range", field="54")
        if amount <= 0:
            raise MessageError("approval without an amount", field="4")
    return PreauthResult(approved=approved, partial=code == "10", approved_amount=amount,
                         auth_code=doc.get("38"), response_code=code, rrn=doc.get("37"), stan=doc["11"],
                         icc_response_tlv=icc, issuer_auth_data=found.get(0x91), arc=found.get(0x8A),
                         issuer_scripts=scripts)


@dataclass(frozen=True)
class AdviceResponse:
    """A 0230/0430: the host took the advice (acknowledged) or refused it."""

    mti: str
    stan: str
    response_code: str

    @property
    def acknowledged(self) -> bool:
        return self.response_code == "00"

    @property
    def meaning(self) -> str:
        return response_meaning(self.response_code)


def _advice_response(raw: bytes, mti: str, dialect: Dialect) -> AdviceResponse:
    doc = decode(raw, dialect, strict=False, reads=_READS)
    _expect(doc, mti, "11", "39")
    return AdviceResponse(mti=mti, stan=doc["11"], response_code=doc["39"])


def parse_completion_response(raw: bytes, dialect: Dialect = s.DIALECT) -> AdviceResponse:
    return _advice_response(raw, "0230", dialect)


def parse_reversal_response(raw: bytes, dialect: Dialect = s.DIALECT) -> AdviceResponse:
    return _advice_response(raw, "0430", dialect)
