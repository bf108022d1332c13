"""Bundle files for sites without a link, carried on a USB stick: pure encode/decode, no I/O.

Sales out (terminal -> registry): one JSON object, the header in clear, the sales encrypted to the
registry's bundle key and the whole signed by the device key (ECDSA P-256 with SHA-256, FIPS 186-4 6.4; the
signature DER-encoded, RFC 3279 2.2.3):

    {"format": "forecourt-usb-sales", "v": 1, "bundle_id": uuid, "terminal": id, "created_at": timestamp,
     "count": n, "recipient": sha-256 of the registry key, "certificate_pem": the device certificate,
     "key_sealed": the data key, "payload": nonce | ciphertext | tag, "sig": signature}

Encryption is a key envelope (as CMS EnvelopedData, RFC 5652 6): a fresh AES-256 data key sealed to the
registry (contracts.sealbox: ECDH P-256 + HKDF-SHA256 + AES-256-GCM, which takes a few kilobytes at most),
the sales under it with AES-256-GCM (NIST SP 800-38D, random 96-bit nonce). Both take as associated data the
canonical header without "key_sealed", "payload" and "sig", so a payload moved under another header (another
terminal, registry or count) does not open. The signature covers the canonical bytes (sorted keys, no
spaces) of every field but "sig", ciphertext included. Inside: the sales as JSON lines, each the very SALE
payload the terminal sends over MQTT, and the chip purse's signed records as PURSE_RECORDS lines
(contracts.purse_messages; "count" counts every line).

Receipt back (registry -> terminal): the registry's answer to each sale of a bundle it imported (the
SALE_ACK it would have sent over MQTT), signed with its configuration key (Ed25519, contracts.signing), so
that a site that never gets a link can mark its sales synced: importing it does what the acks would have.

Configuration in (registry -> terminal): the registry's SIGNED_CONFIG document (Ed25519, contracts.signing)
in a small wrapper; its own signature protects it, and the terminal's ConfigStore checks it as it checks one
from the broker. It is not encrypted: it holds no secret (attendants carry PIN verifiers, never PINs).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import MessageError
from contracts.purse_messages import is_purse_line
from contracts.sealbox import SealError, open_sealed, seal
from contracts.signing import SignatureError, sign_bytes, verify_bytes

__all__ = [
    "CONFIG_FORMAT",
    "MAX_BUNDLE",
    "MAX_SALES",
    "RECEIPT_FORMAT",
    "REGISTRY_KEY_B64",
    "SALES_FORMAT",
    "ConfigBundle",
    "Receipt",
    "SalesBundle",
    "UsbBundleError",
    "canonical",
    "decode_config_bundle",
    "decode_receipt",
    "decode_sales_bundle",
    "encode_config_bundle",
    "encode_receipt",
    "encode_sales_bundle",
    "open_lines",
    "open_sales",
    "recipient_id",
    "registry_key_from_b64",
    "registry_key_to_b64",
    "verify_sales_signature",
]

SALES_FORMAT = "forecourt-usb-sales"
CONFIG_FORMAT = "forecourt-usb-config"
RECEIPT_FORMAT = "forecourt-usb-receipt"
RECEIPT_CONTEXT = b"forecourt usb receipt v1\n"     # what the registry's key signs here, and nothing else
VERSION = 1
MAX_BUNDLE = 64 * 2**20           # a file larger than this is refused before it is parsed
MAX_SALES = 100_000               # sales in one bundle at most (a SALE is about 400 bytes)
_NONCE, _TAG = 12, 16

_UUID = m.matching(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)
_SALES_HEADER: Mapping[str, m.Check] = {
    "format": m.matching(SALES_FORMAT), "bundle_id": _UUID, "terminal": d.HEARTBEAT["terminal"],
    "created_at": m.is_timestamp, "count": m.int_range(0, MAX_SALES),
    "recipient": m.matching(r"[0-9a-f]{64}"),
    "certificate_pem": d.ENROLL_REPLY["certificate_pem"],
    "key_sealed": m.matching(r"[A-Za-z0-9+/]{20,400}={0,2}"),
    "payload": lambda v: isinstance(v, str) and len(v) <= MAX_BUNDLE and _B64.fullmatch(v) is not None,
    "sig": m.matching(r"[A-Za-z0-9+/]{8,200}={0,2}"),
}
_CONFIG_WRAPPER: Mapping[str, m.Check] = {
    "format": m.matching(CONFIG_FORMAT), "bundle_id": _UUID, "terminal": d.HEARTBEAT["terminal"],
    "created_at": m.is_timestamp, "config": lambda v: isinstance(v, dict),
}


class UsbBundleError(MessageError):
    """A bundle file that is malformed, tampered with, or not for this reader; `reason` says which:
    malformed, too_large, unsupported, bad_signature, does_not_open, and the readers' own
    (registry.usbimport, firmware.usbimport)."""

    def __init__(self, message: str, reason: str, **context: Any) -> None:
        super().__init__(message, reason=reason, **context)
        self.reason = reason


@dataclass(frozen=True)
class SalesBundle:
    """A parsed sales bundle: its header fields, and the bytes its signature covers."""

    bundle_id: str
    terminal: str
    created_at: str
    count: int
    recipient: str
    certificate_pem: str
    key_sealed: str
    payload: str
    sig: bytes
    signed: bytes             # canonical bytes of every field but "sig"
    context: bytes            # the payload's associated data


@dataclass(frozen=True)
class ConfigBundle:
    bundle_id: str
    terminal: str
    created_at: str
    config: dict[str, Any]    # a SIGNED_CONFIG document, not yet verified


def canonical(doc: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8 (every value here is a string or an integer)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def recipient_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 (hex) of the registry bundle key's DER SubjectPublicKeyInfo: names the registry it is for."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# The registry bundle key as the signed configuration carries it (CONFIG_BODY "registry_bundle_key"):
# base64 of its DER SubjectPublicKeyInfo (RFC 5480 2; 91 bytes for P-256).
REGISTRY_KEY_B64 = r"[A-Za-z0-9+/]{122}=="


def registry_key_to_b64(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def registry_key_from_b64(text: str) -> ec.EllipticCurvePublicKey:
    """The registry's P-256 bundle key from its configuration form; UsbBundleError no_registry_key else."""
    if not isinstance(text, str) or re.fullmatch(REGISTRY_KEY_B64, text) is None:
        raise UsbBundleError("no registry bundle key (a P-256 key in base64 DER)", "no_registry_key")
    try:
        key = serialization.load_der_public_key(base64.b64decode(text))
    except ValueError as exc:
        raise UsbBundleError("registry bundle key does not load", "no_registry_key") from exc
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise UsbBundleError("registry bundle key is not EC P-256", "no_registry_key")
    return key


def _context(header: Mapping[str, Any]) -> bytes:
    sealed = ("key_sealed", "payload", "sig")
    return b"forecourt-usb-sales|" + canonical({k: v for k, v in header.items() if k not in sealed})


def encode_sales_bundle(sales: Sequence[bytes], *, terminal: str, created_at: str, certificate_pem: str,
                        device_key: ec.EllipticCurvePrivateKey, registry_key: ec.EllipticCurvePublicKey,
                        bundle_id: str | None = None) -> bytes:
    """The bundle file of these SALE payloads (contracts.messages.encode output, one each)."""
    if any(b"\n" in s for s in sales) or len(sales) > MAX_SALES:
        raise UsbBundleError("sales do not fit a bundle", "malformed")
    header: dict[str, Any] = {
        "format": SALES_FORMAT, "v": VERSION, "bundle_id": bundle_id or str(uuid.uuid4()),
        "terminal": terminal, "created_at": created_at, "count": len(sales),
        "recipient": recipient_id(registry_key), "certificate_pem": certificate_pem}
    plain = b"".join(s + b"\n" for s in sales)
    context, data_key, nonce = _context(header), AESGCM.generate_key(256), os.urandom(_NONCE)
    header["key_sealed"] = seal(registry_key, data_key, context=context)
    body = nonce + AESGCM(data_key).encrypt(nonce, plain, context)
    header["payload"] = base64.b64encode(body).decode("ascii")
    sig = device_key.sign(canonical(header), ec.ECDSA(hashes.SHA256()))
    doc = {**header, "sig": base64.b64encode(sig).decode("ascii")}
    _check(doc, _SALES_HEADER)
    return canonical(doc) + b"\n"


def _load(raw: bytes, fmt: str) -> dict[str, Any]:
    if len(raw) > MAX_BUNDLE:
        raise UsbBundleError("bundle file too large", "too_large", size=len(raw))
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UsbBundleError("bundle file is not JSON (truncated?)", "malformed") from exc
    if not isinstance(doc, dict):
        raise UsbBundleError("bundle file is not a JSON object", "malformed")
    if doc.get("format") != fmt:
        raise UsbBundleError(f"not a {fmt} bundle", "unsupported")
    version = doc.pop("v", None)
    if type(version) is not int or version != VERSION:
        raise UsbBundleError("unsupported bundle version", "unsupported")
    return doc


def _check(doc: Mapping[str, Any], schema: Mapping[str, m.Check]) -> None:
    fields = {k: v for k, v in doc.items() if k != "v"}
    if set(fields) != set(schema):
        raise UsbBundleError("bundle header has missing or unknown fields", "malformed")
    for name, check in schema.items():
        if not check(fields[name]):
            raise UsbBundleError("bundle header field is invalid", "malformed", field=name)


def decode_sales_bundle(raw: bytes) -> SalesBundle:
    """Parse a sales bundle file (structure only: the signature, certificate and payload are checked by
    verify_sales_signature, the registry and open_sales). UsbBundleError on anything malformed."""
    doc = _load(raw, SALES_FORMAT)
    _check(doc, _SALES_HEADER)
    try:
        sig = base64.b64decode(doc["sig"], validate=True)
    except binascii.Error as exc:
        raise UsbBundleError("bundle signature is not base64", "malformed") from exc
    header = {"v": VERSION, **{k: v for k, v in doc.items() if k != "sig"}}
    return SalesBundle(bundle_id=doc["bundle_id"], terminal=doc["terminal"], created_at=doc["created_at"],
                       count=doc["count"], recipient=doc["recipient"], certificate_pem=doc["certificate_pem"],
                       key_sealed=doc["key_sealed"], payload=doc["payload"], sig=sig,
                       signed=canonical(header), context=_context(header))


def verify_sales_signature(bundle: SalesBundle, public_key: ec.EllipticCurvePublicKey) -> None:
    """The device's signature over header and ciphertext; UsbBundleError bad_signature otherwise."""
    if not (isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1)):
        raise UsbBundleError("device key is not EC P-256", "bad_signature")
    try:
        public_key.verify(bundle.sig, bundle.signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise UsbBundleError("bundle signature does not verify", "bad_signature",
                             bundle_id=bundle.bundle_id) from exc


def open_lines(bundle: SalesBundle, registry_key: ec.EllipticCurvePrivateKey) -> list[bytes]:
    """The payload's lines (SALE payloads, and chip purse records: contracts.purse_messages.PURSE_RECORDS),
    opened and counted against the header; not yet decoded."""
    if bundle.recipient != recipient_id(registry_key.public_key()):
        raise UsbBundleError("bundle is sealed for another registry", "wrong_registry",
                             bundle_id=bundle.bundle_id)
    try:
        data_key = open_sealed(registry_key, bundle.key_sealed, context=bundle.context)
        body = base64.b64decode(bundle.payload, validate=True)
        if len(data_key) != 32 or len(body) < _NONCE + _TAG:
            raise UsbBundleError("bundle payload is malformed", "malformed")
        plain = AESGCM(data_key).decrypt(body[:_NONCE], body[_NONCE:], bundle.context)
    except (SealError, InvalidTag, binascii.Error) as exc:
        raise UsbBundleError("bundle payload does not open", "does_not_open",
                             bundle_id=bundle.bundle_id) from exc
    lines = plain.split(b"\n")
    if lines[-1] != b"" or len(lines) - 1 != bundle.count:
        raise UsbBundleError("bundle holds another number of sales than its header says", "malformed")
    return lines[:-1]


def open_sales(bundle: SalesBundle, registry_key: ec.EllipticCurvePrivateKey) -> list[dict[str, Any]]:
    """The sales inside, each decoded as a SALE and of the bundle's terminal; the count must match. Chip
    purse records in the bundle are skipped here (registry.purse.bundle reads them)."""
    sales = []
    for line in open_lines(bundle, registry_key):
        try:
            if is_purse_line(line):
                continue
            sale = m.decode(line, m.SALE)
        except MessageError as exc:       # names the field, never its value
            raise UsbBundleError("bundle holds a malformed sale", "malformed", bundle_id=bundle.bundle_id,
                                 **exc.context) from exc
        if sale["terminal"] != bundle.terminal:
            raise UsbBundleError("bundle holds a sale of another terminal", "wrong_terminal",
                                 bundle_id=bundle.bundle_id)
        sales.append(sale)
    return sales


def encode_config_bundle(config: Mapping[str, Any], *, created_at: str,
                         bundle_id: str | None = None) -> bytes:
    """A SIGNED_CONFIG document as a bundle file for its terminal."""
    doc: dict[str, Any] = {"format": CONFIG_FORMAT, "v": VERSION, "bundle_id": bundle_id or str(uuid.uuid4()),
           "terminal": config.get("terminal"), "created_at": created_at, "config": dict(config)}
    _check(doc, _CONFIG_WRAPPER)
    _check_config(doc["config"], doc["terminal"])
    return canonical(doc) + b"\n"


def decode_config_bundle(raw: bytes) -> ConfigBundle:
    """Parse a configuration bundle file; its configuration's signature is the ConfigStore's to check."""
    doc = _load(raw, CONFIG_FORMAT)
    _check(doc, _CONFIG_WRAPPER)
    _check_config(doc["config"], doc["terminal"])
    return ConfigBundle(bundle_id=doc["bundle_id"], terminal=doc["terminal"], created_at=doc["created_at"],
                        config={k: v for k, v in doc["config"].items() if k != "v"})


def _check_config(config: dict[str, Any], terminal: str) -> None:
    try:
        m.encode({k: v for k, v in config.items() if k != "v"}, d.SIGNED_CONFIG)    # validates
    except MessageError as exc:
        raise UsbBundleError("bundle holds no valid signed configuration", "malformed") from exc
    if config["terminal"] != terminal:
        raise UsbBundleError("bundle configuration is for another terminal", "malformed")


_ACK: m.Check = lambda a: isinstance(a, dict) and set(a) == set(m.SALE_ACK) and all(
    check(a[k]) for k, check in m.SALE_ACK.items())
_ACKS: m.Check = lambda v: isinstance(v, list) and len(v) <= MAX_SALES and all(_ACK(a) for a in v)
_RECEIPT: Mapping[str, m.Check] = {
    "format": m.matching(RECEIPT_FORMAT), "bundle_id": _UUID, "terminal": d.HEARTBEAT["terminal"],
    "created_at": m.is_timestamp, "acks": _ACKS, "key_id": d.SIGNED_CONFIG["key_id"],
    "sig": d.SIGNED_CONFIG["sig"],
}


@dataclass(frozen=True)
class Receipt:
    bundle_id: str
    terminal: str
    acks: list[dict[str, Any]]      # SALE_ACK documents, one per sale of the bundle


def encode_receipt(acks: Sequence[Mapping[str, Any]], *, bundle_id: str, terminal: str, created_at: str,
                   key_id: str, private_key: Ed25519PrivateKey) -> bytes:
    """The registry's signed answers to a sales bundle, as a file for the terminal."""
    doc: dict[str, Any] = {"format": RECEIPT_FORMAT, "v": VERSION, "bundle_id": bundle_id,
                           "terminal": terminal, "created_at": created_at, "acks": [dict(a) for a in acks],
                           "key_id": key_id}
    doc["sig"] = sign_bytes(canonical(doc), private_key, context=RECEIPT_CONTEXT)
    _check(doc, _RECEIPT)
    return canonical(doc) + b"\n"


def decode_receipt(raw: bytes, trusted: Mapping[str, Ed25519PublicKey], *, terminal: str) -> Receipt:
    """A receipt file checked: its shape, the registry's signature by a trusted key, this terminal."""
    doc = _load(raw, RECEIPT_FORMAT)
    _check(doc, _RECEIPT)
    signed = canonical({"v": VERSION, **{k: v for k, v in doc.items() if k != "sig"}})
    try:
        verify_bytes(signed, doc["sig"], doc["key_id"], trusted, context=RECEIPT_CONTEXT)
    except SignatureError as exc:
        raise UsbBundleError("receipt signature does not verify", exc.reason,
                             bundle_id=doc["bundle_id"]) from exc
    if doc["terminal"] != terminal:
        raise UsbBundleError("receipt is for another terminal", "wrong_terminal", bundle_id=doc["bundle_id"])
    return Receipt(doc["bundle_id"], doc["terminal"], doc["acks"])
