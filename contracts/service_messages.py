"""Requests a terminal makes of the registry besides authorizations: a loyalty card's balance and movements,
redeeming a reward or converting points to credit, a paper voucher, an attendant's sign-in, a top-up
against cash, a shift's Z report (issue 15).

One topic carries them all (contracts.protocol "service_request"), as an MQTT 5 request whose answer comes
back on the terminal's inbox. A request names its operation ("op") and carries only the fields that
operation takes; an answer carries the operation's result, checked against that operation's schema.
Card numbers and voucher codes travel sealed to the request as in AUTH_REQUEST (contracts.panseal), a PIN
only as a PIN block. An attendant's requests carry the ticket (TICKET) their online sign-in answered.
Same encoding rules as contracts.messages.

>>> rid = "0f8fad5b-d9cb-469f-a165-70867728950e"
>>> req = {"request_id": rid, "terminal": "T-0001", "station": "ST-001", "op": "voucher_release",
...        "voucher": 12, "request": rid}
>>> decode_request(encode_request(req))["voucher"]
12
>>> decode_request(encode_request(req | {"points": 5}))
Traceback (most recent call last):
    ...
contracts.errors.MessageError: payload has unknown fields (fields=points)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts import messages as m
from contracts.errors import MessageError
from contracts.messages import Check, Omissible, int_range, matching
from contracts.panseal import PAN_SEALED
from contracts.purse_service import PURSE_OPS, PURSE_RESULTS, SAM_TAKEN

__all__ = ["OPS", "RESULTS", "SERVICE_REQUEST", "SERVICE_RESPONSE", "TICKET", "ServiceReason",
           "decode_request", "decode_response", "encode_request", "encode_response"]

_UUID = matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID = matching(r"[A-Za-z0-9_.-]{1,64}")
_TEXT = matching(r"[^\x00-\x1f]{0,200}")
_CODE = matching(r"[a-z][a-z0-9_]{0,31}")
_SEALED = matching(PAN_SEALED.pattern)
_MEDIUM = matching("|".join(m.MEDIA))
_MASKED = matching(r"[0-9A-FU*]{12,19}")
_BOOL: Check = lambda v: isinstance(v, bool)
_POINTS = int_range(-(10**12), 10**12)
_MONEY = int_range(0, 10**10)
_PIN_BLOCK = matching(r"[0-9A-F]{32}")


def _list_of(item: Mapping[str, Check], most: int) -> Check:
    def check(v: Any) -> bool:
        if not isinstance(v, list) or len(v) > most:
            return False
        try:
            for x in v:
                _fields(x, item)
        except MessageError:
            return False
        return True
    return check


def _map_of(item: Mapping[str, Check], most: int) -> Check:
    """An object of up to `most` names (ids, "-" for none) to objects of `item`'s fields."""
    def check(v: Any) -> bool:
        if not isinstance(v, dict) or len(v) > most or not all(isinstance(k, str) and _ID(k) for k in v):
            return False
        try:
            for x in v.values():
                _fields(x, item)
        except MessageError:
            return False
        return True
    return check


def _fields(doc: Any, schema: Mapping[str, Check]) -> None:
    if not isinstance(doc, dict):
        raise MessageError("payload field is not an object")
    m.encode(doc, schema)        # checks every field (the bytes are not used)


def _is(doc: Any, schema: Mapping[str, Check]) -> bool:
    try:
        _fields(doc, schema)
    except MessageError:
        return False
    return True


_WHEN = matching(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")     # UTC, to the second
_COUNT = int_range(0, 10**13)
# one group of a shift's sales: dispensing sales, litres (cl), the pumps' amount and what was charged (cents)
_TOTALS: Mapping[str, Check] = {"sales": _COUNT, "volume_cl": _COUNT, "amount_cents": _COUNT,
                                "charged_cents": _COUNT}
# an attendant's action in the shift (its details stay in the terminal's journal: nothing secret travels)
_ACTION: Mapping[str, Check] = {"at": _WHEN, "attendant": _ID, "action": _CODE,
                                "subject": matching(r"[^\x00-\x1f]{0,64}")}
_SHIFT: Mapping[str, Check] = {
    "shift": int_range(1, 2**62), "attendant": _ID, "opened_at": _WHEN, "closed_at": _WHEN,
    "after_seq": int_range(0, 2**62), "last_seq": int_range(0, 2**62),     # the shift's sale numbers
    "total": lambda v: _is(v, _TOTALS), "by_product": _map_of(_TOTALS, 64),
    "by_payment": _map_of(_TOTALS, 16), "by_attendant": _map_of(_TOTALS, 128), "topups_cents": _COUNT,
    "cash_cents": _COUNT,
    "actions": _list_of(_ACTION, 2000),
}

# What each operation takes besides request_id, terminal, station and op. A card is sealed to the request
# (card_sealed, its medium when not a chip); an attendant is the one signed in at the terminal.
_CARD: Mapping[str, Check] = {"card_sealed": _SEALED, "medium": Omissible(_MEDIUM)}
# what an online sign-in answers: "<expiry, unix seconds>.<MAC>" over (attendant, terminal, expiry) under a
# registry key; an attendant's request carries it, so a terminal acts only for an attendant signed in there
TICKET = r"[0-9]{10}\.[0-9a-f]{32}"
_ATTENDANT: Mapping[str, Check] = {"attendant": _ID, "ticket": matching(TICKET)}
OPS: Mapping[str, Mapping[str, Check]] = {
    # a loyalty card: its balance, tier, last movements and the rewards this station has
    "loyalty_lookup": _CARD,
    # an attendant redeems a reward for a loyalty card: handed over now, or ordered
    "loyalty_redeem": {**_CARD, **_ATTENDANT, "reward": int_range(1, 2**31), "handed_over": _BOOL},
    # an attendant turns a loyalty card's points into credit on a money card (target_sealed, sealed like
    # card_sealed) by the conversion table
    "loyalty_convert": {**_CARD, **_ATTENDANT, "points": int_range(1, 10**9), "target_sealed": _SEALED,
                        "target_medium": Omissible(_MEDIUM)},
    # a paper voucher's code typed at the pump, sealed like a card number
    "voucher_redeem": {"code_sealed": _SEALED, "pump": int_range(1, 32)},
    # a voucher whose sale dispensed nothing is usable again: only by the terminal and the redeem request
    # (its request_id) that took it
    "voucher_release": {"voucher": int_range(1, 2**62), "request": _UUID},
    # an attendant's card and PIN (a PIN block as fleet PINs travel)
    "attendant_signin": {**_CARD, "pin_block": _PIN_BLOCK},
    # cash taken by an attendant and put on a prepaid, gift or fleet money wallet (wallet: which credit of
    # a card with several)
    "topup": {**_CARD, **_ATTENDANT, "amount_cents": int_range(1, 10**8),
              "wallet": Omissible(int_range(1, 2**62))},
    # a terminal's Z report (firmware.attendant.shift), sent until stored: kept once per terminal and shift
    "shift_close": _SHIFT,
    **PURSE_OPS,        # the chip purse (contracts.purse_service)
}
# a movement's date and time are the loyalty account's wall clock (what the cardholder lived)
_HISTORY: Mapping[str, Check] = {"date": matching(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
                                 "time": matching(r"[0-9]{2}:[0-9]{2}:[0-9]{2}"),
                                 "station": matching(r"[A-Za-z0-9_.-]{0,64}"), "points": _POINTS,
                                 "kind": _CODE}
_REWARD: Mapping[str, Check] = {"reward": int_range(1, 2**31), "name": _TEXT, "points": _POINTS,
                                "stock": int_range(0, 10**6)}
RESULTS: Mapping[str, Mapping[str, Check]] = {
    "loyalty_lookup": {"masked": _MASKED, "balance": _POINTS, "tier": _ID, "pooled": _BOOL,
                       "history": _list_of(_HISTORY, 30), "rewards": _list_of(_REWARD, 32),
                       # the account's next earning sale today gets the first-use bonus; the card is a
                       # payment card linked to the account, not a loyalty card (a terminal's receipt)
                       "first_use": Omissible(_BOOL), "linked": Omissible(_BOOL)},
    "loyalty_redeem": {"order": int_range(1, 2**62), "status": _CODE, "balance": _POINTS},
    "voucher_redeem": {"voucher": int_range(1, 2**62), "product": _ID, "volume_cl": int_range(1, 10**6)},
    "voucher_release": {},
    "attendant_signin": {"attendant": _ID, "name": _TEXT, "role": _CODE, "ticket": matching(TICKET)},
    "loyalty_convert": {"masked": _MASKED, "points": _POINTS, "credit_cents": _MONEY, "balance": _POINTS},
    "topup": {"masked": _MASKED, "paid_cents": _MONEY, "bonus_cents": _MONEY, "balance_cents": int_range(
        -(10**12), 10**12)},
    "shift_close": {"stored": _BOOL},      # False: this shift's report was stored before
    **PURSE_RESULTS,
}
_OP = matching("|".join(OPS))

SERVICE_REQUEST: Mapping[str, Check] = {"request_id": _UUID, "terminal": _ID, "station": _ID, "op": _OP}
# "reason" is "" when ok, else a ServiceReason value (a terminal older than a reason shows a plain refusal);
# "result" follows RESULTS[op] when ok and is {} otherwise, except attendant_signin's "tries_left".
SERVICE_RESPONSE: Mapping[str, Check] = {
    "request_id": _UUID, "op": _OP, "ok": _BOOL, "reason": _TEXT,
    "result": lambda v: isinstance(v, dict), "tries_left": Omissible(int_range(0, 99)),
}


class ServiceReason:
    """Why the registry refused a service request (the terminal shows the text for the code)."""

    UNKNOWN_CARD = "unknown_card"
    NOT_ALLOWED = "not_allowed"            # this card, attendant or station may not do that
    INSUFFICIENT_POINTS = "insufficient_points"
    OUT_OF_STOCK = "out_of_stock"
    POOLED = "pooled"                      # the card's points are pooled: it neither shows nor redeems them
    VOUCHER_USED = "voucher_used"
    VOUCHER_EXPIRED = "voucher_expired"
    VOUCHER_UNKNOWN = "voucher_unknown"
    TOO_MANY_TRIES = "too_many_tries"      # wrong voucher codes from this terminal: wait a while
    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"                      # the attendant is locked out
    UNAVAILABLE = "unavailable"            # the registry could not answer now
    NOT_SIGNED_IN = "not_signed_in"        # no valid ticket of an online sign-in at this terminal
    SAM_TAKEN = SAM_TAKEN                  # the SAM is fitted to another active terminal


def encode_request(doc: Mapping[str, Any]) -> bytes:
    """A request checked against the base schema and its operation's fields."""
    op = doc.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise MessageError("payload field is invalid", field="op")
    return m.encode(doc, {**SERVICE_REQUEST, **OPS[op]})


def decode_request(raw: bytes) -> dict[str, Any]:
    head = m.decode(raw, {**SERVICE_REQUEST, **{k: Omissible(lambda v: True) for o in OPS.values()
                                                for k in o}})
    return m.decode(raw, {**SERVICE_REQUEST, **OPS[head["op"]]})


def encode_response(doc: Mapping[str, Any]) -> bytes:
    _result(doc)
    return m.encode(doc, SERVICE_RESPONSE)


def decode_response(raw: bytes) -> dict[str, Any]:
    doc = m.decode(raw, SERVICE_RESPONSE)
    _result(doc)
    return doc


def _result(doc: Mapping[str, Any]) -> None:
    result, op = doc.get("result"), doc.get("op")
    if not isinstance(result, dict) or not isinstance(op, str) or op not in RESULTS:
        raise MessageError("payload field is invalid", field="result")
    if doc.get("ok"):
        _fields(result, RESULTS[op])
    elif result:
        raise MessageError("a refusal carries no result", field="result")
