"""contracts.messages: strict MQTT payload schemas;
every deviation is a MessageError that never echoes a PAN."""

from __future__ import annotations

import dataclasses
import datetime as dt
import doctest
import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import messages as m
from contracts.errors import MessageError
from contracts.panseal import derive_pan_key, seal_pan
from contracts.reasons import LEGACY_REASONS, DeclineReason

PAN = "7077001000000019"
UUID1 = "0f8fad5b-d9cb-469f-a165-70867728950e"
UUID2 = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
# a fixed nonce: the same value in every process, so that test ids match under pytest-xdist
SEALED = seal_pan(derive_pan_key(bytes(16)), PAN, request_id=UUID1, terminal="T-0001", station="ST-001",
                  nonce=bytes(12))

VALID: dict[str, dict[str, Any]] = {
    "AUTH_REQUEST": {"request_id": UUID1, "terminal": "T-0001", "station": "ST-001", "pump": 1,
                     "pan_sealed": SEALED,
                     "expiry": "2912", "pin_block": "0123456789ABCDEF0123456789ABCDEF", "medium": "chip",
                     "prompts": {"odometer": "123456", "vehicle": "4711"}},
    "AUTH_RESPONSE": {"request_id": UUID1, "approved": True, "reason": "approved", "auth_id": UUID2,
                      "allowed_cl": 15000, "nozzles": [1, 2], "card_masked": "707700******0019",
                      "allowances": [
                          {"nozzle": 1, "product": "diesel", "volume_cl": 15000, "amount_cents": 24885},
                          {"nozzle": 2, "product": "adblue", "volume_cl": 2000, "amount_cents": 1798}]},
    "SALE": {"sale_id": UUID1, "kind": "fleet", "auth_id": UUID2, "terminal": "T-0001", "station": "ST-001",
             "pump": 2, "nozzle": 1, "product": "diesel", "volume_cl": 2000, "amount_cents": 3318,
             "price_milli": 1659, "card_masked": "707700******0019",
             "finished_at": "2025-03-01T10:11:12.123456Z", "recovered": False, "flags": ["totals_mismatch"]},
    "SALE_ACK": {"sale_id": UUID1, "status": "stored", "reason": ""},
    "TERMINAL_CONFIG": {"terminal": "T-0001", "station": "ST-001", "station_name": "Forecourt Demo Station",
                        "currency": "EUR", "version": 12345,
                        "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel",
                                    "price_milli": 1659}]},
}
SCHEMAS: dict[str, Mapping[str, Any]] = {name: getattr(m, name) for name in VALID}
# fields an older sender may leave out, and what decode() makes of them
DEFAULTS = {("SALE", "kind"): "fleet"}

# a value of the wrong JSON type for every field (None where the field is not optional)
WRONG_TYPE: dict[str, Any] = {
    "request_id": 12, "terminal": 1, "station": ["ST"], "pump": "1", "pan_sealed": 7077001000000019,
    "expiry": 2912, "pin_block": None, "approved": 1, "reason": None, "auth_id": 5, "allowed_cl": "100",
    "nozzles": 1, "card_masked": 7, "sale_id": None, "nozzle": 1.0, "product": 3, "volume_cl": True,
    "amount_cents": 1.5, "price_milli": "1659", "finished_at": 0, "recovered": "no", "flags": "a,b",
    "status": True, "station_name": None, "currency": 978, "version": "1", "prices": {}, "kind": None,
    "medium": 1, "prompts": ["odometer"], "allowances": {},
}


def valid(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(VALID[name]))


def raw(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(doc)).encode()


@pytest.mark.parametrize("name", list(VALID))
def test_round_trip(name: str) -> None:
    data = m.encode(valid(name), SCHEMAS[name])
    assert json.loads(data)["v"] == m.VERSION == 1
    assert m.decode(data, SCHEMAS[name]) == VALID[name]


def test_encoding_is_compact_and_sorted() -> None:
    data = m.encode(valid("SALE_ACK"), m.SALE_ACK)
    assert data == (b'{"reason":"","sale_id":"0f8fad5b-d9cb-469f-a165-70867728950e",'
                    b'"status":"stored","v":1}')


def test_optional_fields_accept_null() -> None:
    doc = valid("AUTH_RESPONSE") | {"approved": False, "auth_id": None, "card_masked": None, "nozzles": [],
                                     "allowed_cl": 0, "reason": "unknown_card"}
    assert m.decode(m.encode(doc, m.AUTH_RESPONSE), m.AUTH_RESPONSE) == doc
    sale = valid("SALE") | {"product": None}
    assert m.decode(raw({"v": 1, **sale}), m.SALE)["product"] is None


@pytest.mark.parametrize(("name", "field"),
                         [(n, f) for n in VALID for f in VALID[n]
                          if (n, f) not in DEFAULTS and not isinstance(SCHEMAS[n][f], m.Omissible)])
def test_each_missing_field_is_rejected(name: str, field: str) -> None:
    doc = valid(name)
    del doc[field]
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), SCHEMAS[name])
    assert info.value.context["fields"] == field
    with pytest.raises(MessageError):
        m.encode(doc, SCHEMAS[name])


def test_defaulted_fields_are_exactly_the_schemas_defaults() -> None:
    found = {(n, f): c.value for n, s in SCHEMAS.items() for f, c in s.items() if isinstance(c, m.Default)}
    assert found == DEFAULTS


@pytest.mark.parametrize(("name", "field"), list(DEFAULTS))
def test_missing_defaulted_field_decodes_to_its_default_but_is_still_required_to_encode(name: str,
                                                                                          field: str) -> None:
    doc = valid(name)
    del doc[field]
    assert m.decode(raw({"v": 1, **doc}), SCHEMAS[name]) == doc | {field: DEFAULTS[name, field]}
    with pytest.raises(MessageError) as info:
        m.encode(doc, SCHEMAS[name])
    assert info.value.context["fields"] == field


def test_sale_from_a_terminal_before_bank_cards_is_a_fleet_sale() -> None:
    old = valid("SALE")
    del old["kind"]
    assert m.decode(raw({"v": 1, **old}), m.SALE)["kind"] == "fleet"
    bank = valid("SALE") | {"kind": "bank", "auth_id": None}
    assert m.decode(m.encode(bank, m.SALE), m.SALE) == bank


@pytest.mark.parametrize("kind", ["fleet", "bank", "loyalty", "prepaid_gift", "voucher2", "a",
                                  "a" + "0" * 31])
def test_sale_kind_is_any_card_program_name(kind: str) -> None:
    doc = valid("SALE") | {"kind": kind, "auth_id": None}
    assert m.decode(m.encode(doc, m.SALE), m.SALE) == doc


@pytest.mark.parametrize("kind", ["FLEET", "Fleet", "", "bank ", " bank", None, 1, ["fleet"], "9fleet",
                                  "_fleet", "a" * 33, "fleet-card", "fleet.card", "flëet", "fleet\n",
                                  "fleet/bank", "../x", "fleet,bank"])
def test_unknown_sale_kind_is_rejected_not_defaulted(kind: Any) -> None:
    doc = valid("SALE") | {"kind": kind}
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), m.SALE)
    assert info.value.context == {"field": "kind"}
    with pytest.raises(MessageError):
        m.encode(doc, m.SALE)


@pytest.mark.parametrize("name", list(VALID))
def test_extra_field_is_rejected(name: str) -> None:
    doc = valid(name) | {"extra": 1}
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), SCHEMAS[name])
    assert info.value.context["fields"] == "extra"
    with pytest.raises(MessageError):
        m.encode(doc, SCHEMAS[name])


@pytest.mark.parametrize(("name", "field"), [(n, f) for n in VALID for f in VALID[n]])
def test_each_field_of_wrong_type_is_rejected_by_name(name: str, field: str) -> None:
    doc = valid(name) | {field: WRONG_TYPE[field]}
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), SCHEMAS[name])
    assert info.value.context == {"field": field}
    with pytest.raises(MessageError):
        m.encode(doc, SCHEMAS[name])


@pytest.mark.parametrize(("name", "field", "bad"), [
    ("AUTH_REQUEST", "request_id", UUID1.upper()),
    ("AUTH_REQUEST", "pump", 0),
    ("AUTH_REQUEST", "pump", 33),
    ("AUTH_REQUEST", "pump", True),
    ("AUTH_REQUEST", "pan_sealed", PAN),                 # a card number in clear is not a sealed one
    ("AUTH_REQUEST", "pan_sealed", SEALED.lower()),
    ("AUTH_REQUEST", "pan_sealed", SEALED[:-2]),         # truncated
    ("AUTH_REQUEST", "pan_sealed", SEALED + "00"),
    ("AUTH_REQUEST", "pan_sealed", "02" + SEALED[2:]),   # a sealing version this code does not know
    ("AUTH_REQUEST", "pin_block", "0123456789abcdef0123456789abcdef"),
    ("AUTH_REQUEST", "pin_block", "0123456789ABCDEF"),
    ("AUTH_REQUEST", "expiry", "29125"),
    ("AUTH_REQUEST", "terminal", "T 0001"),
    ("AUTH_REQUEST", "terminal", ""),
    ("AUTH_REQUEST", "terminal", "T" * 65),
    ("AUTH_RESPONSE", "nozzles", [0]),
    ("AUTH_RESPONSE", "nozzles", [16]),
    ("AUTH_RESPONSE", "nozzles", list(range(1, 16)) + [1]),
    ("AUTH_RESPONSE", "allowed_cl", -1),
    ("AUTH_RESPONSE", "reason", "line\nbreak"),
    ("AUTH_RESPONSE", "reason", "x" * 201),
    ("AUTH_RESPONSE", "card_masked", "7077-00**-0019"),
    ("SALE", "finished_at", "2025-03-01 10:11:12Z"),
    ("SALE", "finished_at", "2025-03-01T10:11:12+00:00"),
    ("SALE", "amount_cents", 10**10 + 1),
    ("SALE", "nozzle", 16),
    ("SALE", "flags", ["ok", "not ok"]),
    ("SALE_ACK", "status", "STORED"),
    ("SALE_ACK", "status", "stored "),
    ("TERMINAL_CONFIG", "currency", "eur"),
    ("TERMINAL_CONFIG", "prices", [{"pump": 1, "nozzle": 1, "product": "diesel", "price_milli": 1659}]),
    ("TERMINAL_CONFIG", "prices", [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "D",
                                    "price_milli": 0}]),
    ("TERMINAL_CONFIG", "prices", [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "D",
                                    "price_milli": 1659, "extra": 1}]),
    ("TERMINAL_CONFIG", "prices", ["diesel"]),
])
def test_out_of_range_or_bad_shape_is_rejected(name: str, field: str, bad: Any) -> None:
    doc = valid(name) | {field: bad}
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), SCHEMAS[name])
    assert info.value.context == {"field": field}


@pytest.mark.parametrize("payload", [b"", b"not json", b"{", b"\xff\xfe\x00", b"{'v': 1}", b"NaN x"])
def test_non_json(payload: bytes) -> None:
    with pytest.raises(MessageError, match="not JSON"):
        m.decode(payload, m.SALE_ACK)


@pytest.mark.parametrize("payload", [b"[]", b"1", b'"v"', b"null", b"true", b'[{"v":1}]'])
def test_non_object(payload: bytes) -> None:
    with pytest.raises(MessageError, match="not a JSON object"):
        m.decode(payload, m.SALE_ACK)


@pytest.mark.parametrize("version", [None, 0, 2, "1", [1], {"v": 1}])
def test_wrong_or_missing_version(version: Any) -> None:
    doc: dict[str, Any] = valid("SALE_ACK")
    if version is not None:
        doc["v"] = version
    with pytest.raises(MessageError, match="version"):
        m.decode(raw(doc), m.SALE_ACK)


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_one(version: Any) -> None:
    with pytest.raises(MessageError, match="version"):
        m.decode(raw({"v": version, **VALID["SALE_ACK"]}), m.SALE_ACK)


def test_too_large() -> None:
    doc = valid("SALE_ACK")
    doc["reason"] = "x" * (64 * 1024)
    with pytest.raises(MessageError, match="too large") as info:
        m.decode(raw({"v": 1, **doc}), m.SALE_ACK)
    assert info.value.context["size"] > 64 * 1024


def test_just_under_the_size_limit_is_parsed() -> None:
    payload = raw({"v": 1, **VALID["SALE_ACK"]})
    padded = payload[:-1] + b" " * (64 * 1024 - len(payload)) + b"}"
    assert len(padded) == 64 * 1024
    assert m.decode(padded, m.SALE_ACK) == VALID["SALE_ACK"]


def test_huge_integer_is_a_message_error() -> None:
    payload = b'{"v":1,"pump":' + b"9" * 5000 + b"}"
    with pytest.raises(MessageError):
        m.decode(payload, m.AUTH_REQUEST)


def test_deep_nesting_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        m.decode(b"[" * 60000, m.AUTH_REQUEST)


def _no_pan_in(exc: MessageError) -> None:
    assert PAN not in str(exc)
    assert PAN not in repr(exc)
    assert all(PAN not in str(v) for v in exc.context.values())


def test_auth_request_refuses_a_clear_card_number() -> None:
    """Issue 10: the full PAN never crosses the broker in clear; the old "pan" field is no field at all."""
    doc = {k: v for k, v in valid("AUTH_REQUEST").items() if k != "pan_sealed"} | {"pan": PAN}
    for call in (lambda: m.decode(raw({"v": 1, **doc}), m.AUTH_REQUEST),
                 lambda: m.encode(doc, m.AUTH_REQUEST)):
        with pytest.raises(MessageError) as info:
            call()
        _no_pan_in(info.value)
    assert PAN not in m.encode(valid("AUTH_REQUEST"), m.AUTH_REQUEST).decode()


@pytest.mark.parametrize("change", [
    {"pan_sealed": PAN},                      # a clear number where the sealed one belongs
    {"pan_sealed": PAN + "X"},
    {"expiry": PAN},                          # a pan in another field
    {"pin_block": PAN},
    {"terminal": PAN + " "},
    {"pump": PAN},
    {PAN: PAN},                               # a pan as an unknown field's value
])
def test_error_text_never_contains_the_pan(change: dict[str, Any]) -> None:
    doc = valid("AUTH_REQUEST") | change
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), m.AUTH_REQUEST)
    if PAN not in change:   # an unknown *field name* is reported (truncated); values never are
        _no_pan_in(info.value)
    with pytest.raises(MessageError) as info:
        m.encode(doc, m.AUTH_REQUEST)
    if PAN not in change:
        _no_pan_in(info.value)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_is_dict_or_message_error(data: bytes) -> None:
    for schema in SCHEMAS.values():
        try:
            doc = m.decode(data, schema)
        except MessageError:
            continue
        assert isinstance(doc, dict) and set(doc) == set(schema)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                    max_size=4),
                     max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(list(VALID)), field=st.data(), value=_JSON)
def test_mutated_valid_document_is_dict_or_message_error(name: str, field: st.DataObject, value: Any) -> None:
    doc = valid(name)
    key = field.draw(st.sampled_from(sorted(doc)))
    doc[key] = value
    try:
        out = m.decode(raw({"v": 1, **doc}), SCHEMAS[name])
    except MessageError as exc:
        assert exc.context == {"field": key}
        return
    assert out == doc


@settings(max_examples=200, deadline=None)
@given(pan=st.from_regex(r"[0-9]{16}", fullmatch=True), junk=st.sampled_from([" ", "!", "\x01", "/"]),
       where=st.sampled_from(["pan_sealed", "expiry", "pin_block", "terminal", "station", "request_id"]))
def test_pan_never_echoed_property(pan: str, junk: str, where: str) -> None:
    doc = valid("AUTH_REQUEST") | {"pan_sealed": pan, where: pan + junk}
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **doc}), m.AUTH_REQUEST)
    assert pan not in str(info.value) and pan not in repr(info.value)


# -- the authorization answer, typed -------------------------------------------------------------------------

def test_doctests() -> None:
    result = doctest.testmod(m)
    assert result.attempted > 0 and result.failed == 0


def test_auth_answer_of_an_approval() -> None:
    wire = m.encode(valid("AUTH_RESPONSE"), m.AUTH_RESPONSE)
    answer = m.AuthAnswer.from_doc(m.decode(wire, m.AUTH_RESPONSE))
    assert answer == m.AuthAnswer(request_id=UUID1, approved=True, reason=None, auth_id=UUID2,
                                  allowed_cl=15000, nozzles=(1, 2), card_masked="707700******0019",
                                  allowances=(m.Allowance(1, "diesel", 15000, 24885),
                                              m.Allowance(2, "adblue", 2000, 1798)))
    assert answer.allowance(2) == m.Allowance(2, "adblue", 2000, 1798) and answer.allowance(3) is None
    assert answer.to_doc() == VALID["AUTH_RESPONSE"]
    assert [f.name for f in dataclasses.fields(m.AuthAnswer)] == list(m.AUTH_RESPONSE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.approved = False  # type: ignore[misc]


DECLINED = {"request_id": UUID1, "approved": False, "auth_id": None, "allowed_cl": 0, "nozzles": [],
            "card_masked": "707700******0019"}


@pytest.mark.parametrize("reason", list(DeclineReason))
def test_auth_answer_reason_is_the_decline_reason(reason: DeclineReason) -> None:
    asked = {"prompts": ["pin", "odometer"]} if reason is DeclineReason.PROMPTS_REQUIRED else {}
    answer = m.AuthAnswer.from_doc(DECLINED | {"reason": reason.value} | asked)
    assert answer.reason is reason and answer.approved is False
    assert answer.to_doc() == DECLINED | {"reason": reason.value} | asked
    assert m.AuthAnswer.declined(UUID1, reason, "707700******0019",
                                 prompts=tuple(asked.get("prompts", ()))) == answer


@pytest.mark.parametrize("doc", [
    DECLINED | {"reason": "prompts_required"},                                   # nothing to ask
    DECLINED | {"reason": "wrong_pin", "prompts": ["odometer"]},                 # asked on another decline
    VALID["AUTH_RESPONSE"] | {"allowances": [{"nozzle": 3, "product": "diesel", "volume_cl": 1,
                                              "amount_cents": 2}]},            # a nozzle not allowed
    VALID["AUTH_RESPONSE"] | {"allowances": [{"nozzle": 1, "product": "diesel", "volume_cl": 15001,
                                              "amount_cents": 2}]},            # beyond allowed_cl
])
def test_auth_answer_prompts_and_allowances_must_agree_with_it(doc: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        m.AuthAnswer.from_doc(doc)


@pytest.mark.parametrize(("code", "reason"), [
    *LEGACY_REASONS.items(),
    ("expired_card", DeclineReason.CARD_EXPIRED),            # what older registries answered
    ("incorrect_pin", DeclineReason.WRONG_PIN),
    ("unknown_terminal", DeclineReason.DO_NOT_HONOUR),       # an older registry's, now not a code of its own
    ("a_reason_added_later", DeclineReason.DO_NOT_HONOUR),   # a newer registry's: still a decline
    ("approved", DeclineReason.DO_NOT_HONOUR),               # "approved" in a decline grants nothing
    ("", DeclineReason.DO_NOT_HONOUR),
])
def test_auth_answer_reads_legacy_and_unknown_reason_codes(code: str, reason: DeclineReason) -> None:
    doc = m.decode(m.encode(DECLINED | {"reason": code}, m.AUTH_RESPONSE), m.AUTH_RESPONSE)
    answer = m.AuthAnswer.from_doc(doc)
    assert answer.reason is reason
    assert answer.to_doc()["reason"] == reason.value            # answered on in today's codes


def test_auth_answer_of_an_approval_has_no_reason_whatever_the_text() -> None:
    answer = m.AuthAnswer.from_doc(valid("AUTH_RESPONSE") | {"reason": "wrong_pin"})
    assert (answer.approved, answer.reason) == (True, None)
    assert answer.to_doc()["reason"] == m.APPROVED == "approved"


@pytest.mark.parametrize("change", [
    {"auth_id": None},                                       # an approval with nothing to settle against
])
def test_auth_answer_approval_without_an_authorization_is_a_message_error(change: dict[str, Any]) -> None:
    with pytest.raises(MessageError, match="approval"):
        m.AuthAnswer.from_doc(valid("AUTH_RESPONSE") | change)


@pytest.mark.parametrize("change", [
    {"auth_id": UUID2},                                      # a decline that grants fuel after all
    {"allowed_cl": 100},
    {"nozzles": [1]},
])
def test_auth_answer_decline_that_grants_something_is_a_message_error(change: dict[str, Any]) -> None:
    with pytest.raises(MessageError, match="decline"):
        m.AuthAnswer.from_doc(DECLINED | {"reason": "wrong_pin"} | change)


def test_auth_answer_constructed_inconsistently_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        m.AuthAnswer(UUID1, True, DeclineReason.WRONG_PIN, UUID2, 100, (1,), None)
    with pytest.raises(MessageError):
        m.AuthAnswer(UUID1, False, None, None, 0, (), None)


@settings(max_examples=200, deadline=None)
@given(approved=st.booleans(), reason=st.text(max_size=30), nozzles=st.lists(st.integers(1, 15), max_size=15),
       allowed=st.integers(0, 10**7), masked=st.none() | st.from_regex(r"[0-9*]{12,19}", fullmatch=True))
def test_auth_answer_from_any_decoded_response_is_an_answer_or_message_error(
        approved: bool, reason: str, nozzles: list[int], allowed: int, masked: str | None) -> None:
    doc = {"request_id": UUID1, "approved": approved, "reason": reason,
           "auth_id": UUID2 if approved else None, "allowed_cl": allowed if approved else 0,
           "nozzles": nozzles if approved else [],
           "card_masked": masked}
    answer = m.AuthAnswer.from_doc(doc)
    assert answer.approved is approved
    assert (answer.reason is None) is approved
    assert m.AuthAnswer.from_doc(answer.to_doc()) == answer
    m.encode(answer.to_doc(), m.AUTH_RESPONSE)


# -- timestamps are parsed, not pattern-matched (issue 10) ------------------------------------------------

@pytest.mark.parametrize("bad", [
    "2025-02-30T00:00:00Z",                 # no such day
    "2025-13-01T00:00:00Z", "2025-00-10T00:00:00Z", "2025-01-00T00:00:00Z",
    "0000-01-01T00:00:00Z",                 # no year 0
    "2025-01-01T24:00:00Z", "2025-01-01T23:60:00Z", "2025-01-01T23:59:60Z",
    "\u0662\u0660\u0662\u0665-01-01T00:00:00Z",     # Arabic-Indic digits: \d and int() accept them
    "2025-01-01T00:00:00.\u0661Z",
    "2025-01-01T00:00:00.1234567Z",         # more than microseconds
    "2025-01-01T00:00:00", "2025-1-01T00:00:00Z",
])
def test_sale_timestamp_that_is_no_real_instant_is_rejected(bad: str) -> None:
    with pytest.raises(MessageError) as info:
        m.decode(raw({"v": 1, **(valid("SALE") | {"finished_at": bad})}), m.SALE)
    assert info.value.context == {"field": "finished_at"}


@pytest.mark.parametrize(("text", "when"), [
    ("2024-02-29T23:59:59Z", dt.datetime(2024, 2, 29, 23, 59, 59)),
    ("2025-03-01T10:11:12.123456Z", dt.datetime(2025, 3, 1, 10, 11, 12, 123456)),
    ("2025-03-01T10:11:12.5Z", dt.datetime(2025, 3, 1, 10, 11, 12, 500000)),
    ("9999-12-31T23:59:59Z", dt.datetime(9999, 12, 31, 23, 59, 59)),     # a real instant: the registry
])                                                                         # judges whether it is plausible
def test_sale_timestamp_parses_to_its_instant(text: str, when: dt.datetime) -> None:
    assert m.parse_timestamp(text) == when
    assert m.decode(raw({"v": 1, **(valid("SALE") | {"finished_at": text})}), m.SALE)["finished_at"] == text


def test_sale_ack_reasons_are_plain_codes() -> None:
    for reason in m.SaleAckReason:
        ack = {"sale_id": UUID1, "status": "rejected", "reason": reason.value}
        assert m.decode(m.encode(ack, m.SALE_ACK), m.SALE_ACK) == ack


# -- PIN tries left on a wrong fleet PIN (issue 12: the PIN screen's "tries left") ------------------------

def test_wrong_pin_answer_carries_the_tries_left() -> None:
    doc = DECLINED | {"reason": "wrong_pin", "pin_tries_left": 2}
    wire = m.encode(doc, m.AUTH_RESPONSE)
    assert b'"pin_tries_left":2' in wire
    answer = m.AuthAnswer.from_doc(m.decode(wire, m.AUTH_RESPONSE))
    assert (answer.reason, answer.pin_tries_left) == (DeclineReason.WRONG_PIN, 2)
    assert answer.to_doc() == doc
    assert answer == m.AuthAnswer.declined(UUID1, DeclineReason.WRONG_PIN, "707700******0019",
                                           pin_tries_left=2)


def test_answer_without_tries_left_is_as_before() -> None:
    """Absent, not null, on every other answer: the bytes an older terminal reads are unchanged; and an
    older registry's wrong_pin answer (no field) reads as tries not known."""
    wire = m.encode(valid("AUTH_RESPONSE"), m.AUTH_RESPONSE)
    assert b"pin_tries_left" not in wire and "pin_tries_left" not in m.AuthAnswer.declined(
        UUID1, DeclineReason.CARD_BLOCKED).to_doc()
    old = m.decode(m.encode(DECLINED | {"reason": "wrong_pin"}, m.AUTH_RESPONSE), m.AUTH_RESPONSE)
    assert m.AuthAnswer.from_doc(old).pin_tries_left is None


@pytest.mark.parametrize("tries", [None, -1, m.MAX_PIN_TRIES + 1, True, "2", 1.0])
def test_tries_left_out_of_its_range_or_null_is_rejected(tries: Any) -> None:
    doc = DECLINED | {"reason": "wrong_pin", "pin_tries_left": tries}
    with pytest.raises(MessageError, match="field=pin_tries_left"):
        m.encode(doc, m.AUTH_RESPONSE)
    with pytest.raises(MessageError, match="field=pin_tries_left"):
        m.decode(raw({"v": 1, **doc}), m.AUTH_RESPONSE)


@pytest.mark.parametrize("doc", [
    DECLINED | {"reason": "card_blocked", "pin_tries_left": 1},
    valid("AUTH_RESPONSE") | {"pin_tries_left": 1},
])
def test_tries_left_on_another_answer_is_a_message_error(doc: dict[str, Any]) -> None:
    with pytest.raises(MessageError, match="PIN tries"):
        m.AuthAnswer.from_doc(m.decode(m.encode(doc, m.AUTH_RESPONSE), m.AUTH_RESPONSE))
