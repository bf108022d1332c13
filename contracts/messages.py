"""MQTT payloads between terminal and registry: pure encode/decode, the schemas as data.

Every payload is a JSON object with "v": 1. decode() checks each field's type and shape and raises
MessageError naming the field, never echoing its value (a field may hold a card number). A field added
after terminals were deployed is a Default: decode() fills in its value when an older sender leaves it
out; encode() still requires it, so this code always states it. A field only some payloads carry is an
Omissible: absent otherwise, never null.

The authorization answer crosses into the terminal as a typed AuthAnswer, its reason a DeclineReason.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.errors import MessageError
from contracts.panseal import PAN_SEALED
from contracts.reasons import DeclineReason, parse_reason

__all__ = [
    "APPROVED",
    "AUTH_PROMPTS",
    "AUTH_REQUEST",
    "AUTH_RESPONSE",
    "MAX_PIN_TRIES",
    "MEDIA",
    "PROGRAM",
    "SALE",
    "SALE_ACK",
    "TERMINAL_CONFIG",
    "VERSION",
    "Allowance",
    "AuthAnswer",
    "Check",
    "Default",
    "Omissible",
    "SaleAckReason",
    "decode",
    "decode_field",
    "encode",
    "int_range",
    "is_timestamp",
    "matching",
    "parse_timestamp",
]

VERSION = 1

Check = Callable[[Any], bool]


def _int(lo: int, hi: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _str(pattern: str) -> Check:
    rx = re.compile(pattern)
    return lambda v: isinstance(v, str) and rx.fullmatch(v) is not None


def parse_timestamp(text: str) -> dt.datetime:
    """A wire timestamp (UTC, "Z", ASCII digits, up to 6 fraction digits) as a naive UTC datetime.

    Raises ValueError for anything else: a date that does not exist, year 0000, leap second 60, digits of
    another script (a regex \\d and int() take those).

    >>> parse_timestamp("2024-02-29T23:59:59.5Z")
    datetime.datetime(2024, 2, 29, 23, 59, 59, 500000)
    >>> parse_timestamp("2025-02-30T00:00:00Z")
    Traceback (most recent call last):
        ...
    ValueError: day is out of range for month
    """
    if _TIMESTAMP.fullmatch(text) is None:
        raise ValueError("not a UTC timestamp")
    date, time = text[:-1].split("T")
    hms, _, fraction = time.partition(".")
    (year, month, day), (hour, minute, second) = date.split("-"), hms.split(":")
    return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                       int(fraction.ljust(6, "0")) if fraction else 0)


_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z", re.ASCII)


def _timestamp(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        parse_timestamp(v)
    except ValueError:
        return False
    return True


# The checks other payload modules build on (contracts.device_messages).
int_range, matching, is_timestamp = _int, _str, _timestamp


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


@dataclass(frozen=True)
class Default:
    """A field older senders leave out: decode() fills in `value`; a value sent is checked as usual."""

    check: Check
    value: Any

    def __call__(self, v: Any) -> bool:
        return self.check(v)


@dataclass(frozen=True)
class Omissible:
    """A field only some payloads carry: encode() and decode() accept it absent; when present, its value
    must pass check (None is not a value: the field is left out instead)."""

    check: Check

    def __call__(self, v: Any) -> bool:
        return v is not None and self.check(v)


# Wrong fleet PINs in a row before the registry blocks the card (registry.service counts them).
MAX_PIN_TRIES = 3

# A card program's name (firmware/programs/): "fleet", "bank", "loyalty", ...
PROGRAM = r"[a-z][a-z0-9_]{0,31}"
_UUID = _str(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID = _str(r"[A-Za-z0-9_.-]{1,64}")
_TEXT = _str(r"[^\x00-\x1f]{0,200}")
_BOOL: Check = lambda v: isinstance(v, bool)
_PUMP = _int(1, 32)
_NOZZLES: Check = lambda v: isinstance(v, list) and len(v) <= 15 and all(_int(1, 15)(n) for n in v)
_MONEY = _int(0, 10**10)
_PRICES: Check = lambda v: (isinstance(v, list) and len(v) <= 32 * 15 and all(
    isinstance(p, dict) and set(p) == {"pump", "nozzle", "product", "product_name", "price_milli"}
    and _TEXT(p["product_name"])
    and _PUMP(p["pump"]) and _int(1, 15)(p["nozzle"]) and _ID(p["product"])
    and _int(1, 999_999)(p["price_milli"]) for p in v))

# How a fleet card reached the terminal: its chip, its stripe (track 2), or a contactless tag's UID.
MEDIA = ("chip", "stripe", "tag")
_MEDIUM = _str("|".join(MEDIA))
# What the registry may ask the driver for before it authorizes (registry.fleet): the card's PIN and the
# account's prompts. Answers are keyed in on the PIN pad: digits (a wider keypad may send capitals).
AUTH_PROMPTS = ("pin", "odometer", "vehicle", "driver_id")
_ANSWERS: Check = lambda v: (isinstance(v, dict) and set(v) <= {"odometer", "vehicle", "driver_id"} and all(
    _str(r"[0-9]{1,7}" if k == "odometer" else r"[0-9A-Z]{1,16}")(x) for k, x in v.items()))
_ASKED: Check = lambda v: (isinstance(v, list) and 0 < len(v) <= len(AUTH_PROMPTS)
                           and len(set(v)) == len(v) and all(x in AUTH_PROMPTS for x in v))
_ALLOWANCES: Check = lambda v: isinstance(v, list) and len(v) <= 15 and all(
    isinstance(a, dict) and set(a) == {"nozzle", "product", "volume_cl", "amount_cents"}
    and _int(1, 15)(a["nozzle"]) and _ID(a["product"]) and _int(0, 10**7)(a["volume_cl"])
    and _MONEY(a["amount_cents"]) for a in v)
# A masked card number: digits and *; a tag's masked number starts with U and shows hex (contracts.cards).
_MASKED = _str(r"[0-9A-FU*]{12,19}")

# field name -> check; every field is required (a Default only on decode) and no other is allowed.
# "pan_sealed": the card number enciphered for the registry and bound to this request (contracts.panseal);
# the full number never crosses the broker in clear, nor rests in its persistence file.
# "pin_block" is "" when no PIN was entered (a tag, or a card the registry asks no PIN of); "medium" only
# when not "chip"; "prompts" only with the answers the registry asked for (an answer "prompts_required"
# lists them). They came with fleet accounts and are left out otherwise, so a registry from before still
# reads a chip card's request.
AUTH_REQUEST: Mapping[str, Check] = {
    "request_id": _UUID, "terminal": _ID, "station": _ID, "pump": _PUMP,
    "pan_sealed": _str(PAN_SEALED.pattern), "expiry": _str(r"[0-9]{4}"),
    "pin_block": _str(r"([0-9A-F]{32})?"), "medium": Omissible(_MEDIUM), "prompts": Omissible(_ANSWERS),
}
# "reason" is "approved" or a DeclineReason value. The wire admits any text, so that a terminal older than
# a reason the registry adds still reads the answer (parse_reason makes it a plain decline).
# "pin_tries_left" only on a wrong_pin decline: the fleet PIN tries the card has before it is blocked.
# It came after terminals were deployed: a terminal reads an older registry's answer (no field) as "not
# known"; a terminal older than it rejects the field (strict schema), so terminals are upgraded first.
# "prompts" only on a prompts_required decline: what to ask before asking again. "allowances" only on an
# approval of a registry that has them: per nozzle of the pump, the most the sale may take (volume and money,
# after every wallet and limit); "allowed_cl" is their largest volume and "nozzles" their nozzles.
AUTH_RESPONSE: Mapping[str, Check] = {
    "request_id": _UUID, "approved": _BOOL, "reason": _TEXT, "auth_id": _opt(_UUID),
    "allowed_cl": _int(0, 10**7), "nozzles": _NOZZLES, "card_masked": _opt(_MASKED),
    "pin_tries_left": Omissible(_int(0, MAX_PIN_TRIES)), "prompts": Omissible(_ASKED),
    "allowances": Omissible(_ALLOWANCES),
}
SALE: Mapping[str, Check] = {
    # "kind" is the card program's name; it came with bank cards: a terminal from before sends fleet
    # sales only, and no "kind". "auth_id" names the registry authorization a sale settles against.
    "sale_id": _UUID, "kind": Default(_str(PROGRAM), "fleet"), "auth_id": _opt(_UUID),
    "terminal": _ID, "station": _ID, "pump": _PUMP,
    "nozzle": _int(0, 15), "product": _opt(_ID), "volume_cl": _int(0, 10**7), "amount_cents": _MONEY,
    "price_milli": _int(0, 999_999), "card_masked": _MASKED,
    "finished_at": _timestamp, "recovered": _BOOL,
    "flags": lambda v: isinstance(v, list) and all(_ID(f) for f in v),
    # the terminal's count of its sales (1, 2, 3...); a release of an unanswered authorization has none
    "seq": Omissible(_int(1, 2**62)),
    # an offline fleet sale (flag "offline", no auth_id): the card number sealed as in AUTH_REQUEST, bound to
    # the sale (request id = sale_id), so the registry finds the card and debits its account when it syncs
    "card_sealed": Omissible(_str(PAN_SEALED.pattern)), "medium": Omissible(_MEDIUM),
    # a loyalty card shown before paying (issue 15): its number sealed the same way, bound to the sale, and
    # how it was read ("chip" too: it may differ from the paying card's); the registry awards its points
    "loyalty_sealed": Omissible(_str(PAN_SEALED.pattern)), "loyalty_medium": Omissible(_MEDIUM),
    "voucher": Omissible(_int(1, 2**62)),      # a sale paid by a paper voucher: the voucher it spends
}
# "stored" and "duplicate" say the registry holds the sale (reason "" or "held"); "rejected" that it never
# will (reason a SaleAckReason), and the terminal parks it for an operator. Like AUTH_RESPONSE, the wire
# admits any reason text, so that a terminal older than a code still reads the answer.
SALE_ACK: Mapping[str, Check] = {"sale_id": _UUID, "status": _str(r"stored|duplicate|rejected"),
                                 "reason": _TEXT}
TERMINAL_CONFIG: Mapping[str, Check] = {
    "terminal": _ID, "station": _ID, "station_name": _TEXT, "currency": _str(r"[A-Z]{3}"),
    "version": _int(0, 2**31), "prices": _PRICES,
}

APPROVED = "approved"      # AUTH_RESPONSE "reason" of an approval


class SaleAckReason(enum.StrEnum):
    """SALE_ACK "reason" codes besides "" (stored and counted)."""

    HELD = "held"                        # stored apart for an operator: fails a registry check, not counted
    MALFORMED = "malformed"              # rejected: the payload does not fit SALE
    WRONG_TERMINAL = "wrong_terminal"    # rejected: sent on another terminal's topic
    CONFLICT = "conflict"                # rejected: its sale_id is stored with other content (kept apart)


@dataclass(frozen=True)
class Allowance:
    """What one nozzle may deliver under an authorization: the most volume, and its money."""

    nozzle: int
    product: str
    volume_cl: int
    amount_cents: int


@dataclass(frozen=True)
class AuthAnswer:
    """The registry's answer to an authorization request, as the terminal acts on it.

    An approval carries the authorization the sale settles against; a decline grants nothing and says why.

    >>> doc = {"request_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "approved": False,
    ...        "reason": "expired_card", "auth_id": None, "allowed_cl": 0, "nozzles": [], "card_masked": None}
    >>> AuthAnswer.from_doc(doc).reason
    <DeclineReason.CARD_EXPIRED: 'card_expired'>
    >>> ok = AuthAnswer.from_doc(doc | {"approved": True, "reason": "approved",
    ...     "auth_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "allowed_cl": 15000, "nozzles": [1, 2]})
    >>> (ok.approved, ok.reason, ok.allowed_cl, ok.nozzles)
    (True, None, 15000, (1, 2))
    >>> ok.to_doc()["reason"], AuthAnswer.from_doc(ok.to_doc()) == ok
    ('approved', True)
    """

    request_id: str
    approved: bool
    reason: DeclineReason | None         # None exactly when approved
    auth_id: str | None                  # the registry's authorization; set exactly when approved
    allowed_cl: int
    nozzles: tuple[int, ...]
    card_masked: str | None
    pin_tries_left: int | None = None    # set only on a WRONG_PIN decline, when the registry tells
    prompts: tuple[str, ...] = ()        # set only on a PROMPTS_REQUIRED decline: what to ask
    allowances: tuple[Allowance, ...] = ()   # an approval's, per nozzle (none from older registries)

    def __post_init__(self) -> None:
        if self.approved and (self.reason is not None or self.auth_id is None):
            raise MessageError("approval without an authorization or with a decline reason")
        if not self.approved and (self.reason is None or self.auth_id is not None or self.allowed_cl
                                  or self.nozzles):
            raise MessageError("decline without a reason or granting fuel")
        if self.pin_tries_left is not None and self.reason is not DeclineReason.WRONG_PIN:
            raise MessageError("PIN tries left on an answer that is not a wrong PIN")
        if bool(self.prompts) != (self.reason is DeclineReason.PROMPTS_REQUIRED):
            raise MessageError("prompts asked for without a prompts_required answer, or none asked")
        if self.allowances and (not self.approved or any(a.volume_cl > self.allowed_cl
                                                          or a.nozzle not in self.nozzles
                                                          for a in self.allowances)):
            raise MessageError("allowances on a decline, or beyond what is allowed")

    def allowance(self, nozzle: int) -> Allowance | None:
        """The allowance of one nozzle; None when the answer has none for it."""
        return next((a for a in self.allowances if a.nozzle == nozzle), None)

    @classmethod
    def declined(cls, request_id: str, reason: DeclineReason, card_masked: str | None = None, *,
                 pin_tries_left: int | None = None, prompts: tuple[str, ...] = ()) -> AuthAnswer:
        """A decline: no authorization, nothing allowed."""
        return cls(request_id, False, reason, None, 0, (), card_masked, pin_tries_left, prompts)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AuthAnswer:
        """From a decoded AUTH_RESPONSE; a reason code unknown here is a plain decline (do not honour).

        Raises MessageError when the answer contradicts itself (an approval without an authorization,
        a decline that grants fuel, PIN tries left on another reason than a wrong PIN).
        """
        approved = doc["approved"]
        return cls(request_id=doc["request_id"], approved=approved,
                   reason=None if approved else parse_reason(doc["reason"]), auth_id=doc["auth_id"],
                   allowed_cl=doc["allowed_cl"], nozzles=tuple(doc["nozzles"]),
                   card_masked=doc["card_masked"], pin_tries_left=doc.get("pin_tries_left"),
                   prompts=tuple(doc.get("prompts", ())),
                   allowances=tuple(Allowance(**a) for a in doc.get("allowances", ())))

    def to_doc(self) -> dict[str, Any]:
        """The AUTH_RESPONSE document; encode() it with AUTH_RESPONSE."""
        doc = {"request_id": self.request_id, "approved": self.approved,
               "reason": APPROVED if self.reason is None else self.reason.value, "auth_id": self.auth_id,
               "allowed_cl": self.allowed_cl, "nozzles": list(self.nozzles), "card_masked": self.card_masked}
        if self.allowances:
            doc["allowances"] = [dict(a.__dict__) for a in self.allowances]
        if self.pin_tries_left is not None:
            doc["pin_tries_left"] = self.pin_tries_left
        if self.prompts:
            doc["prompts"] = list(self.prompts)
        return doc


def encode(doc: Mapping[str, Any], schema: Mapping[str, Check]) -> bytes:
    """Validate doc against schema and return its JSON bytes.

    >>> ack = {"sale_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "status": "stored", "reason": ""}
    >>> encode(ack, SALE_ACK)
    b'{"reason":"","sale_id":"0f8fad5b-d9cb-469f-a165-70867728950e","status":"stored","v":1}'
    >>> encode(ack | {"status": "lost"}, SALE_ACK)
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: payload field is invalid (field=status)
    """
    _check(doc, schema)
    return json.dumps({"v": VERSION, **doc}, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes, schema: Mapping[str, Check]) -> dict[str, Any]:
    """Parse and validate a payload; raise MessageError on anything unexpected.

    >>> decode(b'{"v":1,"sale_id":"0f8fad5b-d9cb-469f-a165-70867728950e","status":"duplicate","reason":""}',
    ...        SALE_ACK)["status"]
    'duplicate'

    A card number is never echoed, only the name of the field it was in:

    >>> decode(b'{"v":1,"sale_id":"4111111111111111","status":"stored","reason":""}', SALE_ACK)
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: payload field is invalid (field=sale_id)
    >>> decode(b'{"v":2,"sale_id":"0f8fad5b-d9cb-469f-a165-70867728950e"}', SALE_ACK)
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: unsupported payload version
    >>> decode(b'{"v":1,"status":"stored","reason":""}', SALE_ACK)
    Traceback (most recent call last):
        ...
    contracts.errors.MessageError: payload lacks fields (fields=sale_id)
    """
    if len(raw) > 64 * 1024:
        raise MessageError("payload too large", size=len(raw))
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:   # bad UTF-8 or JSON, over-long numbers, deep nesting
        raise MessageError("payload is not JSON") from exc
    if not isinstance(doc, dict):
        raise MessageError("payload is not a JSON object")
    version = doc.pop("v", None)
    if type(version) is not int or version != VERSION:
        raise MessageError("unsupported payload version")
    for name, check in schema.items():
        if isinstance(check, Default) and name not in doc:
            doc[name] = check.value
    _check(doc, schema)
    return doc


def decode_field(value: Any, name: str, schema: Mapping[str, Check]) -> Any:
    """value when it is valid as field `name` of schema, else None: for answering a payload that is not.

    >>> decode_field("T-0001", "terminal", SALE), decode_field("T 0001", "terminal", SALE)
    ('T-0001', None)
    """
    return value if value is not None and schema[name](value) else None


def _check(doc: Mapping[str, Any], schema: Mapping[str, Check]) -> None:
    missing = sorted(n for n in set(schema) - set(doc) if not isinstance(schema[n], Omissible))
    extra = sorted(set(doc) - set(schema))
    if missing:
        raise MessageError("payload lacks fields", fields=",".join(missing))
    if extra:
        raise MessageError("payload has unknown fields", fields=",".join(str(e)[:32] for e in extra))
    for name, check in schema.items():
        if name in doc and not check(doc[name]):
            raise MessageError("payload field is invalid", field=name)
