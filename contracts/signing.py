"""Ed25519 signatures over canonical JSON: the registry's signed configuration, update and USB bundles.

A signature covers `context + data`; each use has its own context (CONFIG_CONTEXT, ...), so a signature
made for one can never be passed off as another. A key is named by its key id, the first 16 hex digits of
the SHA-256 of its 32 raw public bytes (RFC 8032 5.1.5). SignatureError.reason says why a check failed.

>>> canonical({"b": [2, "é"], "a": 1})
b'{"a":1,"b":[2,"\\xc3\\xa9"]}'
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import MessageError
from contracts.messages import Check, int_range, matching

__all__ = [
    "CONFIG_BODY",
    "CONFIG_CONTEXT",
    "PIN_VERIFIER",
    "REASONS",
    "SignatureError",
    "canonical",
    "check_body",
    "digest",
    "key_id",
    "pin_matches",
    "pin_verifier",
    "public_b64",
    "public_from_b64",
    "sign_bytes",
    "sign_envelope",
    "trusted_from_b64",
    "verify_bytes",
    "verify_envelope",
]

CONFIG_CONTEXT = b"forecourt signed config v1\n"
# How far a terminal's clock may run behind the registry's before a fresh configuration looks issued in
# the future (not_yet_valid).
CLOCK_SKEW = dt.timedelta(minutes=5)
REASONS = ("bad_signature", "unknown_key", "wrong_terminal", "expired", "not_yet_valid", "malformed")
_MAX_INT = 2**53 - 1          # I-JSON (RFC 7493 2.2): integers a double holds exactly


class SignatureError(MessageError):
    """A signed document or bundle fails its check; reason is one of REASONS."""

    def __init__(self, reason: str, **context: Any) -> None:
        super().__init__(f"signature check failed: {reason}", reason=reason, **context)
        self.reason = reason


def canonical(doc: Any) -> bytes:
    """The bytes a signature covers: JSON with sorted keys, no spaces, UTF-8.

    Only objects with ASCII keys, arrays, strings and integers up to 2**53-1 are admitted. For such
    documents this is RFC 8785 (JCS): its member order (3.2.3, UTF-16 code units) equals code-point order
    on ASCII keys, its string escapes (3.2.2.2) are json.dumps's with ensure_ascii off, and its numbers
    (3.2.2.3, ES6 serialization) print integers in that range as plain digits. Floats (whose printing
    differs between libraries), null, booleans and other keys are refused: MessageError.
    """
    _admit(doc, 0)
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except UnicodeEncodeError as exc:       # a lone surrogate: not UTF-8
        raise MessageError("document holds text that is not UTF-8") from exc


def _admit(v: Any, depth: int) -> None:
    if depth > 16:
        raise MessageError("document is nested too deep")
    if isinstance(v, bool) or v is None or isinstance(v, float):
        raise MessageError("document holds a value canonical JSON does not admit here",
                           kind=type(v).__name__)
    if isinstance(v, int):
        if abs(v) > _MAX_INT:
            raise MessageError("document holds an integer beyond 2**53-1")
    elif isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str) or not k.isascii():
                raise MessageError("document has a key that is not ASCII text")
            _admit(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _admit(x, depth + 1)
    elif not isinstance(v, str):
        raise MessageError("document holds a value canonical JSON does not admit here", kind=type(v).__name__)


def digest(doc: Any) -> str:
    """SHA-256 of the canonical bytes, hex: tells whether two documents differ."""
    return hashlib.sha256(canonical(doc)).hexdigest()


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 over the 32 raw public key bytes."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def public_b64(public_key: Ed25519PublicKey) -> str:
    """The raw public key in base64, as config-keys.json and ENROLL_REPLY's config_keys carry it."""
    return base64.b64encode(_raw(public_key)).decode("ascii")


def public_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("malformed", field="public_key") from exc


def trusted_from_b64(keys: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    """{key id: base64 public key} as stored, checked: each key id must be its key's own."""
    out: dict[str, Ed25519PublicKey] = {}
    for kid, text in keys.items():
        public = public_from_b64(text)
        if key_id(public) != kid:
            raise SignatureError("malformed", field="key_id")
        out[kid] = public
    return out


def sign_bytes(data: bytes, private_key: Ed25519PrivateKey, *, context: bytes) -> str:
    """Base64 Ed25519 signature over context + data."""
    return base64.b64encode(private_key.sign(context + data)).decode("ascii")


def verify_bytes(data: bytes, sig: str, key: str, trusted: Mapping[str, Ed25519PublicKey], *,
                 context: bytes) -> None:
    """Check a signature made by sign_bytes under the key named `key`; SignatureError if it fails."""
    public = trusted.get(key)
    if public is None:
        raise SignatureError("unknown_key", key_id=key[:32])
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("bad_signature") from exc
    try:
        public.verify(raw, context + data)
    except InvalidSignature as exc:
        raise SignatureError("bad_signature") from exc


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


_SIGNED = ("terminal", "version", "issued_at", "expires_at", "key_id", "body")     # all but "sig"


def _signed_part(doc: Mapping[str, Any]) -> bytes:
    return canonical({k: doc[k] for k in _SIGNED})


def sign_envelope(body: Mapping[str, Any], *, terminal: str, version: int, expires_at: dt.datetime,
                  issued_at: dt.datetime, key_id: str, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A SIGNED_CONFIG document (encode it with contracts.messages.encode). Times are naive UTC."""
    check_body(body)
    doc: dict[str, Any] = {"terminal": terminal, "version": version, "issued_at": _stamp(issued_at),
                           "expires_at": _stamp(expires_at), "key_id": key_id, "body": dict(body)}
    doc["sig"] = sign_bytes(_signed_part(doc), private_key, context=CONFIG_CONTEXT)
    m.encode(doc, d.SIGNED_CONFIG)       # its shape, before anyone sends it
    return doc


def verify_envelope(doc: Mapping[str, Any], trusted: Mapping[str, Ed25519PublicKey], *, terminal: str,
                    now: dt.datetime, allow_expired: bool = False) -> dict[str, Any]:
    """The body of a SIGNED_CONFIG document (decoded, no "v") once its signature, terminal and time hold.

    Checked in this order: shape, key, signature, terminal, time, body. now is naive UTC.
    allow_expired: a stored configuration that was good when accepted is still run after its expiry.
    """
    try:
        m.encode(doc, d.SIGNED_CONFIG)
    except MessageError as exc:
        where = exc.context.get("field") or exc.context.get("fields")
        raise SignatureError("malformed", field=where) from exc
    verify_bytes(_signed_part(doc), doc["sig"], doc["key_id"], trusted, context=CONFIG_CONTEXT)
    if doc["terminal"] != terminal:
        raise SignatureError("wrong_terminal", version=doc["version"])
    issued, expires = m.parse_timestamp(doc["issued_at"]), m.parse_timestamp(doc["expires_at"])
    if issued > now + CLOCK_SKEW:
        raise SignatureError("not_yet_valid", version=doc["version"])
    if now >= expires and not allow_expired:
        raise SignatureError("expired", version=doc["version"])
    try:
        check_body(doc["body"])
    except MessageError as exc:
        raise SignatureError("malformed", version=doc["version"], field=exc.context.get("field")) from exc
    return dict(doc["body"])


# -- the configuration a terminal runs (the body of a SIGNED_CONFIG) --------------------------------------

_ID = matching(r"[A-Za-z0-9_.-]{1,64}")
_TEXT = matching(r"[^\x00-\x1f]{0,200}")
_PROGRAM = matching(m.PROGRAM)
_CODE = matching(r"[a-z][a-z0-9_]{0,47}")
# stop-list entry: a card token (contracts.cards.card_token) or a masked number (never a full one)
_BLOCKED = matching(r"[0-9a-f]{32}|(?=[0-9*]{12,19}\Z)[0-9]{0,6}\*+[0-9]{4}")
# an attendant's PIN verifier, never the PIN: PBKDF2-HMAC-SHA256 (RFC 8018 5.2), iterations, salt, key
PIN_VERIFIER = r"pbkdf2-sha256\$[0-9]{4,7}\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}="
_VERIFIER = matching(PIN_VERIFIER)
PIN_ITERATIONS = 600_000      # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
# the registry's P-256 key for USB bundles: base64 of its DER SubjectPublicKeyInfo (RFC 5480), 91 bytes
_BUNDLE_KEY_B64 = matching(r"|[A-Za-z0-9+/]{122}==")


def _item(shape: Mapping[str, Check] | Check) -> Check:
    """A check of one value: a plain check, or an object with exactly these fields."""
    if not isinstance(shape, Mapping):
        return shape
    fields = shape
    return lambda x: isinstance(x, dict) and set(x) == set(fields) and all(c(x[k]) for k, c in fields.items())


def _list_of(shape: Mapping[str, Check] | Check, most: int) -> Check:
    item = _item(shape)
    return lambda v: isinstance(v, list) and len(v) <= most and all(item(x) for x in v)


def _dict_of(key: Check, shape: Mapping[str, Check] | Check, most: int) -> Check:
    item = _item(shape)
    return lambda v: isinstance(v, dict) and len(v) <= most and all(key(k) and item(x) for k, x in v.items())


_SETTING: Check = lambda v: (isinstance(v, int) and not isinstance(v, bool) and abs(v) <= 2**31) or _TEXT(v)

# Sized so that a whole SIGNED_CONFIG stays under contracts.messages' 64 KiB payload limit.
CONFIG_BODY: Mapping[str, Check] = {
    "station": _ID, "station_name": _TEXT, "currency": matching(r"[A-Z]{3}"),
    "prices": m.TERMINAL_CONFIG["prices"],
    "products": _list_of({"code": _ID, "name": _TEXT}, 64),
    # the pump map: pump -> nozzles -> product
    "pumps": _list_of({"pump": int_range(1, 32), "nozzles": _list_of(
        {"nozzle": int_range(1, 15), "product": _ID}, 15)}, 32),
    "stop_list": _list_of(_BLOCKED, 500),
    # per program, what a sale may reach while the registry is away
    "offline_limits": _dict_of(_PROGRAM, {"amount_cents": int_range(0, 10**8),
                                          "volume_cl": int_range(0, 10**6)}, 16),
    "programs": _list_of({"name": _PROGRAM, "enabled": int_range(0, 1),
                          "settings": _dict_of(_CODE, _SETTING, 32)}, 16),
    # who may sign in at this station: their card by its entry under this terminal's stop key (contracts.
    # panseal.stop_entry of "attendant:" and the number; registry.attendants.card_entry), never the number
    "attendants": _list_of({"id": _ID, "name": _TEXT, "role": matching(r"attendant|supervisor"),
                            "pin_verifier": _VERIFIER, "card": matching(r"[0-9a-f]{32}")}, 64),
    "registry_bundle_key": _BUNDLE_KEY_B64,   # public key of USB bundles (contracts.usbbundle); "" none
    # the station's wall clock (IANA name) and each product's group (loyalty rules name groups): a receipt's
    # points are then the registry's. Left out by a registry from before them.
    "timezone": m.Omissible(matching(r"[A-Za-z][A-Za-z0-9_+/-]{0,63}")),
    "product_groups": m.Omissible(_dict_of(_ID, matching(r"[a-z][a-z0-9_]{0,15}"), 64)),
    # each product's 3-digit Conexxus code, where it has one: what chip wallets allow (docs/chip-wallets.md)
    "product_codes3": m.Omissible(_dict_of(_ID, matching(r"[0-9]{3}"), 64)),
}


def check_body(body: Mapping[str, Any]) -> None:
    """MessageError unless body fits CONFIG_BODY and holds together: each priced nozzle is in the pump
    map with the same product, every product named is listed, no nozzle, program, attendant or attendant
    card twice."""
    m.encode(body, CONFIG_BODY)
    codes = {p["code"] for p in body["products"]}
    mapped = {(p["pump"], n["nozzle"]): n["product"] for p in body["pumps"] for n in p["nozzles"]}
    if len(mapped) != sum(len(p["nozzles"]) for p in body["pumps"]) or not set(mapped.values()) <= codes:
        raise MessageError("pump map names a nozzle twice or an unknown product", field="pumps")
    priced = [(p["pump"], p["nozzle"], p["product"]) for p in body["prices"]]
    if len({(pump, noz) for pump, noz, _ in priced}) != len(priced) or any(
            mapped.get((pump, noz)) != product for pump, noz, product in priced):
        raise MessageError("a price is not on the pump map's nozzle and product", field="prices")
    for field, key in (("programs", "name"), ("attendants", "id"), ("attendants", "card")):
        names = [x[key] for x in body[field]]
        if len(set(names)) != len(names):
            raise MessageError("an entry is listed twice", field=field)


def pin_verifier(pin: str, *, salt: bytes, iterations: int = PIN_ITERATIONS) -> str:
    """An attendant's PIN verifier for the configuration (salt: 16 random bytes). A short PIN stays
    guessable from its verifier by brute force: the configuration is kept 0600 on the terminal."""
    if len(salt) != 16 or not 1000 <= iterations <= 9_999_999:
        raise MessageError("PIN verifier needs a 16-byte salt and 1000..9999999 iterations")
    key = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return "$".join(("pbkdf2-sha256", str(iterations), base64.b64encode(salt).decode(),
                     base64.b64encode(key).decode()))


def pin_matches(verifier: str, pin: str) -> bool:
    """Whether pin is the one verifier was made from (constant-time compare)."""
    if not _VERIFIER(verifier):
        return False
    _, iterations, salt, key = verifier.split("$")
    got = hashlib.pbkdf2_hmac("sha256", pin.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(got, base64.b64decode(key))
