"""Fuzz targets for the USB stick's bundle files (contracts.usbbundle): a file from a stick is untrusted.

Sales: the parser, then the device's signature and the registry's opening, with fixed keys. Beyond typed
errors only, the property: a file that still verifies and opens after a change holds exactly the sales it
was made with (a change the signature does not cover may not change what is stored). The same for a
receipt and the answers it carries.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from contracts import messages as m
from contracts.errors import MessageError
from contracts.signing import key_id
from contracts.usbbundle import (
    decode_config_bundle,
    decode_receipt,
    decode_sales_bundle,
    encode_config_bundle,
    encode_receipt,
    encode_sales_bundle,
    open_sales,
    verify_sales_signature,
)
from fuzz.harness import Target, Violation

__all__ = ["TARGETS"]

_DEVICE = ec.derive_private_key(0x5EED_0001, ec.SECP256R1())
_REGISTRY = ec.derive_private_key(0x5EED_0002, ec.SECP256R1())
_AT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@functools.cache
def _cert_pem() -> str:
    """A certificate of the device key (self-signed: the chain is the registry's check, not the parser's)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "T-0001")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_DEVICE.public_key())
            .serial_number(1).not_valid_before(_AT).not_valid_after(_AT + dt.timedelta(days=365))
            .sign(_DEVICE, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@functools.cache
def _sales() -> tuple[dict[str, Any], ...]:
    return tuple({
        "sale_id": str(uuid.UUID(int=n + 1)), "kind": "bank", "auth_id": None, "terminal": "T-0001",
        "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 1000 * n,
        "amount_cents": 1659 * n, "price_milli": 1659, "card_masked": "476173******0010",
        "finished_at": "2026-06-01T11:00:00.000000Z", "recovered": False, "flags": []} for n in range(2))


def _sales_seeds() -> list[bytes]:
    return [encode_sales_bundle([m.encode(s, m.SALE) for s in _sales()[:n]], terminal="T-0001",
                                created_at="2026-06-01T12:00:00Z", certificate_pem=_cert_pem(),
                                device_key=_DEVICE, registry_key=_REGISTRY.public_key()) for n in (1, 2)]


def usb_sales_bundle(data: bytes) -> None:
    bundle = decode_sales_bundle(data)
    verify_sales_signature(bundle, _DEVICE.public_key())
    sales = open_sales(bundle, _REGISTRY)
    if tuple(sales) != _sales()[:len(sales)] or len(sales) != bundle.count:
        raise Violation("a bundle that verifies and opens holds other sales than it was made with")


_CONFIG = {"terminal": "T-0001", "version": 3, "issued_at": "2026-06-01T12:00:00Z",
           "expires_at": "2026-07-01T12:00:00Z", "key_id": "0123456789abcdef",
           "body": {"station": "ST-001"}, "sig": "AAAA"}


def usb_config_bundle(data: bytes) -> None:
    bundle = decode_config_bundle(data)
    if bundle.config.get("terminal") != bundle.terminal or "v" in bundle.config:
        raise Violation("a configuration bundle for another terminal than its wrapper says")


_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_TRUSTED = {key_id(_SIGNER.public_key()): _SIGNER.public_key()}
_ACKS = [{"sale_id": str(uuid.UUID(int=1)), "status": "stored", "reason": ""},
         {"sale_id": str(uuid.UUID(int=2)), "status": "rejected", "reason": "conflict"}]


def _receipt_seeds() -> list[bytes]:
    return [encode_receipt(_ACKS, bundle_id=str(uuid.UUID(int=9)), terminal="T-0001",
                           created_at="2026-06-01T12:00:00Z", key_id=key_id(_SIGNER.public_key()),
                           private_key=_SIGNER)]


def usb_receipt(data: bytes) -> None:
    """A receipt that verifies after a change holds the answers it was signed with."""
    receipt = decode_receipt(data, _TRUSTED, terminal="T-0001")
    if receipt.acks != _ACKS:
        raise Violation("a receipt that verifies holds other answers than it was signed with")


TARGETS = [
    Target("usb_sales_bundle", usb_sales_bundle, (MessageError,), _sales_seeds, max_len=8192),
    Target("usb_config_bundle", usb_config_bundle, (MessageError,),
           lambda: [encode_config_bundle(_CONFIG, created_at="2026-06-01T12:00:00Z")], max_len=2048),
    Target("usb_receipt", usb_receipt, (MessageError,), _receipt_seeds, max_len=2048),
]
