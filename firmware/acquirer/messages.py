"""Acquirer messages of an automated fuel dispenser: pure builders and parsers over contracts.iso8583_spec.

The conversation: 0100 pre-authorization for the maximum fill -> 0110; after the fill either a 0220
completion advice for the dispensed amount (field 95) -> 0230, or a 0420 reversal advice -> 0430.
Repeats of unacknowledged advices are 0221/0421 (ISO 8583:1987 MTI position 4: 1 = repeat).

Every error is MessageError naming a field, never echoing a value: fields hold card numbers. Advices
never carry track 2 or PIN data (track data must not be kept after authorization).

>>> t = Terminal("AFD00001", "000000000123456", "FORECOURT 1 HIGH STREET")
>>> c = Card(pan="4761739001010010", expiry="2812", entry_mode="051", pan_sequence="01")
>>> raw = preauth_request(terminal=t, card=c, amount=15000, stan=1, when=_EXAMPLE_TIME,
...                       icc_tlv=bytes.fromhex("9F2608A1B2C3D4E5F60718"))
>>> doc = decode(raw)
>>> raw[:4], doc["4"], doc["25"], doc["18"], doc["22"], doc["55"]
(b'0100', '000000015000', '06', '5542', '051', '9F2608A1B2C3D4E5F60718')
>>> c
Card(pan='476173******0010', expiry='2812', entry_mode='051', pan_sequence='01')
>>> response_meaning("51")
'insufficient funds'
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from contracts import iso8583_spec as s
from contracts.errors import MessageError
from contracts.iso8583 import FORMATS, decode, encode
from firmware import tlv

__all__ = [
    "RESPONSE_TEXT",
    "AdviceResponse",
    "Card",
    "FuelLine",
    "Original",
    "PreauthResult",
    "ReversalReason",
    "Terminal",
    "as_repeat",
    "completion_advice",
    "decode",
    "encode",
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
    "12": "invalid transaction", "14": "invalid card number", "17": "customer cancellation",
    "30": "format error", "51": "insufficient funds", "54": "expired card", "55": "incorrect PIN",
    "68": "response received too late", "91": "issuer or switch inoperative", "96": "system malfunction",
}

def response_meaning(code: str) -> str:
    return RESPONSE_TEXT.get(code, "unknown response code")


@dataclass(frozen=True)
class Terminal:
    """Card acceptor data (fields 41, 42, 43, 49, 18)."""

    terminal_id: str
    merchant_id: str
    name_location: str
    currency: str = "978"
    mcc: str = s.MCC_AUTOMATED_FUEL_DISPENSER

    def fields(self) -> dict[str, str]:
        return {"18": self.mcc, "41": self.terminal_id, "42": self.merchant_id,
                "43": self.name_location[:40].ljust(40), "49": self.currency}


@dataclass(frozen=True)
class Card:
    """What the card gave us. repr() masks the PAN and hides track 2."""

    pan: str = field(repr=False)
    expiry: str  # YYMM
    entry_mode: str
    pan_sequence: str | None = None  # EMV 5F34 as two digits
    track2: str | None = field(default=None, repr=False)

    @property
    def masked_pan(self) -> str:
        return self.pan[:6] + "*" * (len(self.pan) - 10) + self.pan[-4:]

    def __repr__(self) -> str:
        return (f"Card(pan={self.masked_pan!r}, expiry={self.expiry!r}, entry_mode={self.entry_mode!r}, "
                f"pan_sequence={self.pan_sequence!r})")

    def fields(self, *, with_track: bool) -> dict[str, str]:
        out = {"2": self.pan, "14": self.expiry, "22": self.entry_mode}
        if self.pan_sequence is not None:
            out["23"] = self.pan_sequence.rjust(3, "0")
        if with_track and self.entry_mode in s.MAGSTRIPE_ENTRY_MODES:
            if self.track2 is None:
                raise MessageError("magnetic stripe entry needs track 2", field="35")
            out["35"] = self.track2
        return out


@dataclass(frozen=True)
class FuelLine:
    """One fuel product in field 63: product n3, unit L/G, quantity n9 (thousandths), amount n12."""

    product: str
    unit: str
    quantity_milli: int
    amount: int

    def encode(self) -> str:
        return f"{self.product}{self.unit}{self.quantity_milli:09d}{self.amount:012d}"


def parse_fuel(value: str) -> list[FuelLine]:
    if not FORMATS["63"].fullmatch(value):
        raise MessageError("fuel lines have the wrong format", field="63")
    return [FuelLine(value[i:i + 3], value[i + 3], int(value[i + 4:i + 13]), int(value[i + 13:i + 25]))
            for i in range(0, len(value), 25)]


@dataclass(frozen=True)
class Original:
    """The pre-authorization an advice refers to (field 90, plus 37/38 from its response)."""

    stan: str
    transmission: str  # field 7 of the 0100, MMDDhhmmss
    mti: str = "0100"
    rrn: str | None = None
    auth_code: str | None = None

    def field_90(self) -> str:
        # original MTI n4, STAN n6, transmission date/time n10, acquirer id n11, forwarding id n11
        return f"{self.mti}{self.stan}{self.transmission}" + "0" * 22


def original_of(request: bytes, result: PreauthResult | None = None) -> Original:
    """The Original for a 0100 we sent, and (if we got one) its response."""
    doc = decode(request)
    if doc["t"] != "0100" or "11" not in doc or "7" not in doc:
        raise MessageError("not a pre-authorization request", mti=doc["t"])
    return Original(stan=doc["11"], transmission=doc["7"], rrn=result.rrn if result else None,
                    auth_code=result.auth_code if result else None)


def _common(terminal: Terminal, stan: int, when: dt.datetime) -> dict[str, str]:
    if when.tzinfo is None:
        raise MessageError("transmission time must be timezone-aware", field="7")
    if not 0 < stan <= 999_999:
        raise MessageError("STAN out of range", field="11")
    utc = when.astimezone(dt.UTC)
    return {"3": s.PROC_GOODS_AND_SERVICES, "7": utc.strftime("%m%d%H%M%S"), "11": f"{stan:06d}",
            "12": when.strftime("%H%M%S"), "13": when.strftime("%m%d"), **terminal.fields()}


def _amount(value: int, fld: str) -> str:
    if not 0 <= value <= 999_999_999_999:
        raise MessageError("amount out of range", field=fld)
    return f"{value:012d}"


def _pump(doc: dict[str, str], pump: int | None) -> None:
    if pump is not None:
        doc["60"] = f"{pump:02d}"


def preauth_request(*, terminal: Terminal, card: Card, amount: int, stan: int, when: dt.datetime,
                    icc_tlv: bytes | None = None, pin_block: bytes | None = None, ksn: bytes | None = None,
                    pump: int | None = None) -> bytes:
    """0100 pre-authorization for the maximum fill amount (minor units)."""
    if amount <= 0:
        raise MessageError("pre-authorization amount must be positive", field="4")
    doc = {"t": "0100", **_common(terminal, stan, when), "4": _amount(amount, "4"),
           **card.fields(with_track=True), "25": s.POS_CONDITION_PREAUTH}
    if card.entry_mode in s.ICC_ENTRY_MODES:
        if not icc_tlv:
            raise MessageError("chip entry needs ICC data", field="55")
        tlv.parse(icc_tlv)  # a malformed TLV is our bug; refuse to send it
        doc["55"] = icc_tlv.hex().upper()
    if pin_block is not None:
        if ksn is None:
            raise MessageError("PIN block without a key serial number", field="53")
        if len(pin_block) not in (8, 16):
            raise MessageError("PIN block must be 8 (format 0) or 16 (format 4) bytes", field="52")
        doc["52" if len(pin_block) == 8 else "110"] = pin_block.hex().upper()
        doc["53"] = ksn.hex().upper()
    _pump(doc, pump)
    return encode(doc)


def _advice(mti: str, *, terminal: Terminal, card: Card, original: Original, amount: int, stan: int,
            when: dt.datetime, icc_tlv: bytes | None, pump: int | None) -> dict[str, str]:
    doc = {"t": mti, **_common(terminal, stan, when), "4": _amount(amount, "4"),
           **card.fields(with_track=False), "25": s.POS_CONDITION_PREAUTH, "90": original.field_90()}
    if original.rrn is not None:
        doc["37"] = original.rrn
    if original.auth_code is not None:
        doc["38"] = original.auth_code
    if icc_tlv:
        tlv.parse(icc_tlv)
        doc["55"] = icc_tlv.hex().upper()
    _pump(doc, pump)
    return doc


def completion_advice(*, terminal: Terminal, card: Card, original: Original, authorized_amount: int,
                      dispensed_amount: int, stan: int, when: dt.datetime, icc_tlv: bytes | None = None,
                      fuel: Iterable[FuelLine] = (), pump: int | None = None) -> bytes:
    """0220 completion: field 4 the authorized amount, field 95 the dispensed (actual) amount."""
    if not 0 < dispensed_amount <= authorized_amount:
        raise MessageError("dispensed amount must be positive and within the authorized amount", field="95")
    doc = _advice("0220", terminal=terminal, card=card, original=original, amount=authorized_amount,
                  stan=stan, when=when, icc_tlv=icc_tlv, pump=pump)
    # 95: actual amount transaction n12, actual amount settlement n12 (not known here), fees x+n8.
    doc["95"] = _amount(dispensed_amount, "95") + "0" * 12 + "C00000000" * 2
    lines = "".join(line.encode() for line in fuel)
    if lines:
        doc["63"] = lines
    return encode(doc)


class ReversalReason(enum.StrEnum):
    """Why a pre-authorization is reversed; the value is the field 39 code sent in the 0420."""

    NOTHING_DISPENSED = "17"  # 1987 "customer cancellation": nozzle hung up, nothing dispensed
    TIMEOUT = "68"  # 1987 "response received too late": the 0110 never came or came late
    # No 1987 code says "card declined after issuer approval"; 06 "error", with the AAC and
    # TVR/CVR from the second GENERATE AC in field 55 telling the issuer why.
    CARD_DECLINED = "06"


def reversal_advice(*, terminal: Terminal, card: Card, original: Original, amount: int,
                    reason: ReversalReason, stan: int, when: dt.datetime, icc_tlv: bytes | None = None,
                    pump: int | None = None) -> bytes:
    """0420 full reversal of the pre-authorization (amount = what was authorized, or requested)."""
    doc = _advice("0420", terminal=terminal, card=card, original=original, amount=amount, stan=stan,
                  when=when, icc_tlv=icc_tlv, pump=pump)
    doc["39"] = ReversalReason(reason).value
    return encode(doc)


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


def _expect(doc: Mapping[str, str], mti: str, *required: str) -> None:
    if doc["t"] != mti:
        raise MessageError("unexpected message type", mti=doc["t"], expected=mti)
    for key in required:
        if key not in doc:
            raise MessageError("mandatory field missing", field=key, mti=mti)


def parse_preauth_response(raw: bytes) -> PreauthResult:
    doc = decode(raw)
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


def _advice_response(raw: bytes, mti: str) -> AdviceResponse:
    doc = decode(raw)
    _expect(doc, mti, "11", "39")
    return AdviceResponse(mti=mti, stan=doc["11"], response_code=doc["39"])


def parse_completion_response(raw: bytes) -> AdviceResponse:
    return _advice_response(raw, "0230")


def parse_reversal_response(raw: bytes) -> AdviceResponse:
    return _advice_response(raw, "0430")
