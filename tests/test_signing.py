"""contracts.signing: canonical JSON, Ed25519 signatures, the signed configuration's envelope and body."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import MessageError
from contracts.signing import (
    CONFIG_BODY,
    CONFIG_CONTEXT,
    SignatureError,
    canonical,
    check_body,
    key_id,
    pin_matches,
    pin_verifier,
    public_b64,
    public_from_b64,
    sign_bytes,
    sign_envelope,
    trusted_from_b64,
    verify_bytes,
    verify_envelope,
)

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())
TRUSTED = {KID: KEY.public_key()}
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)

BODY: dict[str, Any] = {
    "station": "ST-001", "station_name": "Forecourt Demo Station", "currency": "EUR",
    "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel", "price_milli": 1659}],
    "products": [{"code": "diesel", "name": "Diesel"}],
    "pumps": [{"pump": 1, "nozzles": [{"nozzle": 1, "product": "diesel"}]}],
    "stop_list": ["707700******0019", "0123456789abcdef0123456789abcdef"],
    "offline_limits": {"fleet": {"amount_cents": 5000, "volume_cl": 3000}},
    "programs": [{"name": "fleet", "enabled": 1, "settings": {"preset_cl": 15000, "label": "Fleet"}}],
    "attendants": [{"id": "A1", "name": "Sam", "role": "attendant", "card": "0123456789abcdef" * 2,
                    "pin_verifier": pin_verifier("4321", salt=b"s" * 16, iterations=1000)}],
    "registry_bundle_key": base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode(),
}


def envelope(body: dict[str, Any] | None = None, *, terminal: str = "T-0001", version: int = 2,
             issued: dt.datetime = NOW, days: int = 30, key: Ed25519PrivateKey = KEY,
             kid: str | None = None) -> dict[str, Any]:
    """A SIGNED_CONFIG document valid `days` from `issued`, signed by key and naming kid (default: its id)."""
    return sign_envelope(body or BODY, terminal=terminal, version=version, issued_at=issued,
                         expires_at=issued + dt.timedelta(days=days),
                         key_id=key_id(key.public_key()) if kid is None else kid, private_key=key)


# -- canonical JSON ------------------------------------------------------------------------------------

def test_canonical_matches_rfc8785_string_example() -> None:
    """RFC 8785 3.2.4: the "string" member of its example serializes as shown there."""
    doc = json.loads('{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/"}')
    assert canonical(doc) == '{"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode()


def test_canonical_sorts_keys_without_spaces() -> None:
    assert canonical({"b": {"d": [1, "x"], "c": -2}, "a": ""}) == b'{"a":"","b":{"c":-2,"d":[1,"x"]}}'


@pytest.mark.parametrize("doc", [{"a": 1.5}, {"a": None}, {"a": True}, {"é": 1}, {1: 1}, {"a": 2**53},
                                 {"a": "\ud800"}, {"a": b"x"}])
def test_canonical_refuses_what_jcs_would_print_otherwise(doc: Any) -> None:
    with pytest.raises(MessageError):
        canonical(doc)


_JSON = st.recursive(st.integers(-(2**53) + 1, 2**53 - 1) | st.text(st.characters(exclude_categories=["Cs"])),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                         st.text(st.characters(max_codepoint=127), max_size=8), inner, max_size=4),
                     max_leaves=20)


@given(_JSON)
def test_canonical_round_trips_and_is_stable(doc: Any) -> None:
    raw = canonical(doc)
    assert json.loads(raw) == doc and canonical(json.loads(raw)) == raw

    def sorted_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        assert [k for k, _ in pairs] == sorted(k for k, _ in pairs)
        return dict(pairs)
    json.loads(raw, object_pairs_hook=sorted_pairs)


# -- Ed25519 -------------------------------------------------------------------------------------------

# RFC 8032 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72): secret key, public key, signature.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", b"",
     ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", b"\x72",
     ("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(secret: str, public: str, message: bytes, signature: str) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    pub = public_from_b64(base64.b64encode(bytes.fromhex(public)).decode())
    sig = base64.b64encode(bytes.fromhex(signature)).decode()
    assert sign_bytes(message, key, context=b"") == sig
    kid = key_id(pub)
    verify_bytes(message, sig, kid, {kid: pub}, context=b"")


def test_key_id_is_sha256_of_the_raw_key() -> None:
    # RFC 8032 TEST 1's public key; sha256 of its 32 bytes, first 16 hex digits
    pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032[0][1]))
    assert key_id(pub) == hashlib.sha256(bytes.fromhex(RFC8032[0][1])).hexdigest()[:16]
    assert len(key_id(pub)) == 16


def test_a_signature_for_one_context_fails_in_another() -> None:
    sig = sign_bytes(b"bundle", KEY, context=b"forecourt update bundle v1\n")
    verify_bytes(b"bundle", sig, KID, TRUSTED, context=b"forecourt update bundle v1\n")
    with pytest.raises(SignatureError) as err:
        verify_bytes(b"bundle", sig, KID, TRUSTED, context=CONFIG_CONTEXT)
    assert err.value.reason == "bad_signature"


def test_verify_bytes_reasons() -> None:
    sig, other = sign_bytes(b"data", KEY, context=b"c"), sign_bytes(b"data", OTHER, context=b"c")
    for args, reason in (((b"datA", sig, KID, TRUSTED), "bad_signature"),
                         ((b"data", "!!", KID, TRUSTED), "bad_signature"),
                         ((b"data", sig, "0000000000000000", TRUSTED), "unknown_key"),
                         ((b"data", other, KID, TRUSTED), "bad_signature")):
        with pytest.raises(SignatureError) as err:
            verify_bytes(*args, context=b"c")
        assert err.value.reason == reason and isinstance(err.value, MessageError)


def test_trusted_keys_must_carry_their_own_id() -> None:
    b64 = public_b64(KEY.public_key())
    assert key_id(trusted_from_b64({KID: b64})[KID]) == KID
    with pytest.raises(SignatureError, match="malformed"):
        trusted_from_b64({"0000000000000000": b64})
    with pytest.raises(SignatureError, match="malformed"):
        trusted_from_b64({KID: "AAAA"})


# -- envelope ------------------------------------------------------------------------------------------

def test_envelope_round_trips_over_the_wire() -> None:
    doc = envelope()
    wire = m.decode(m.encode(doc, d.SIGNED_CONFIG), d.SIGNED_CONFIG)
    assert verify_envelope(wire, TRUSTED, terminal="T-0001", now=NOW) == BODY
    assert doc["key_id"] == KID and doc["version"] == 2 and doc["expires_at"] == "2026-12-31T12:00:00Z"


def _tampered(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(envelope())
    target: Any = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("doc", "reason"), [
    (_tampered(("version",), 3), "bad_signature"),
    (_tampered(("expires_at",), "2027-12-31T12:00:00Z"), "bad_signature"),
    (_tampered(("body", "currency"), "USD"), "bad_signature"),
    (_tampered(("body", "prices", 0, "price_milli"), 1), "bad_signature"),
    (_tampered(("terminal",), "T-0002"), "bad_signature"),
    (_tampered(("key_id",), "0000000000000000"), "unknown_key"),
    (envelope(key=OTHER), "unknown_key"),
    (envelope(terminal="T-0002"), "wrong_terminal"),
    (envelope(issued=NOW - dt.timedelta(days=31)), "expired"),
    (envelope(issued=NOW - dt.timedelta(days=30)), "expired"),        # expires_at == now: no longer valid
    (envelope(issued=NOW + dt.timedelta(minutes=6)), "not_yet_valid"),
    (_tampered(("sig",), None), "malformed"),
    (_tampered(("extra",), 1), "malformed"),
])
def test_envelope_refusals(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignatureError) as err:
        verify_envelope(doc, TRUSTED, terminal="T-0001", now=NOW)
    assert err.value.reason == reason


def test_other_key_for_same_id_is_a_bad_signature() -> None:
    doc = envelope(key=OTHER) | {"key_id": KID}
    with pytest.raises(SignatureError, match="bad_signature"):
        verify_envelope(doc, TRUSTED, terminal="T-0001", now=NOW)


def test_clock_a_little_behind_still_accepts_and_expired_may_be_allowed() -> None:
    ahead = envelope(issued=NOW + dt.timedelta(minutes=4))
    assert verify_envelope(ahead, TRUSTED, terminal="T-0001", now=NOW) == BODY
    old = envelope(issued=NOW - dt.timedelta(days=40))
    assert verify_envelope(old, TRUSTED, terminal="T-0001", now=NOW, allow_expired=True) == BODY


def test_a_signed_body_that_breaks_the_schema_is_malformed() -> None:
    """Even correctly signed (a registry bug), a body outside CONFIG_BODY is refused, never run."""
    doc = envelope()
    doc["body"] = BODY | {"currency": "eur"}
    signed = {k: doc[k] for k in ("terminal", "version", "issued_at", "expires_at", "key_id", "body")}
    doc["sig"] = sign_bytes(canonical(signed), KEY, context=CONFIG_CONTEXT)
    with pytest.raises(SignatureError) as err:
        verify_envelope(doc, TRUSTED, terminal="T-0001", now=NOW)
    assert err.value.reason == "malformed" and "eur" not in str(err.value)


# -- body ----------------------------------------------------------------------------------------------

def test_sign_envelope_checks_the_body_first() -> None:
    with pytest.raises(MessageError):
        envelope(BODY | {"stop_list": ["4111111111111111"]})     # a full card number is no stop-list entry


@pytest.mark.parametrize(("change", "field"), [
    ({"pumps": [{"pump": 1, "nozzles": [{"nozzle": 1, "product": "petrol"}]}]}, "pumps"),
    ({"pumps": [{"pump": 1, "nozzles": [{"nozzle": 1, "product": "diesel"}] * 2}]}, "pumps"),
    ({"pumps": [{"pump": 2, "nozzles": [{"nozzle": 1, "product": "diesel"}]}]}, "prices"),
    ({"prices": BODY["prices"] * 2}, "prices"),
    ({"programs": BODY["programs"] * 2}, "programs"),
    ({"attendants": BODY["attendants"] * 2}, "attendants"),
    ({"attendants": [BODY["attendants"][0] | {"pin_verifier": "4321"}]}, "attendants"),
    ({"attendants": [BODY["attendants"][0] | {"card": "7077001000000019"}]}, "attendants"),
    ({"attendants": [BODY["attendants"][0] | {"role": "manager"}]}, "attendants"),
    ({"attendants": [BODY["attendants"][0] | {"id": "A2"}, BODY["attendants"][0]]}, "attendants"),
    ({"attendants": [{k: v for k, v in BODY["attendants"][0].items() if k != "card"}]}, "attendants"),
    ({"offline_limits": {"fleet": {"amount_cents": -1, "volume_cl": 0}}}, "offline_limits"),
    ({"programs": [{"name": "fleet", "enabled": 2, "settings": {}}]}, "programs"),
    ({"registry_bundle_key": "AAAA"}, "registry_bundle_key"),
])
def test_body_that_does_not_hold_together(change: dict[str, Any], field: str) -> None:
    with pytest.raises(MessageError) as err:
        check_body(BODY | change)
    assert field in str(err.value)


def test_an_empty_station_is_a_valid_body() -> None:
    empty: dict[str, Any] = {k: [] for k in CONFIG_BODY if k not in ("timezone", "product_groups",
                                                                     "product_codes3")}
    check_body(empty | {k: BODY[k] for k in ("station", "station_name", "currency")}
               | {"offline_limits": {}, "registry_bundle_key": ""})


def test_a_station_clock_and_product_groups_are_optional_and_checked() -> None:
    check_body(BODY | {"timezone": "Europe/Berlin", "product_groups": {"diesel": "fuel", "coffee": "shop"}})
    for bad in ({"timezone": "Berlin; rm"}, {"product_groups": {"diesel": "Fuel"}},
                {"product_groups": {"bad id": "fuel"}}):
        with pytest.raises(MessageError):
            check_body(BODY | bad)


def test_conexxus_codes_of_products_are_optional_and_three_digits() -> None:
    check_body(BODY | {"product_codes3": {"diesel": "019", "petrol95": "001"}})
    for bad in ({"diesel": "19"}, {"diesel": "0190"}, {"diesel": "D19"}):
        with pytest.raises(MessageError):
            check_body(BODY | {"product_codes3": bad})


def test_pin_verifier() -> None:
    verifier = BODY["attendants"][0]["pin_verifier"]
    assert "4321" not in verifier and verifier.startswith("pbkdf2-sha256$1000$")
    assert pin_matches(verifier, "4321") and not pin_matches(verifier, "4322")
    assert not pin_matches("plain", "plain")
    with pytest.raises(MessageError):
        pin_verifier("1", salt=b"short")
