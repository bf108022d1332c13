"""The terminal's sales for a USB stick: every sale the registry has not acknowledged, in one bundle file
(contracts.usbbundle) encrypted to the registry and signed with the device key.

An export marks nothing: a stick may be lost, broken or never read. A sale leaves the backlog only when the
registry acknowledges it, as ever (HostLink: once the link is back, each sale is sent again and the
registry answers "duplicate" for one it got from a stick). Each export therefore carries every unacknowledged
sale, and importing an older bundle after a newer one stores nothing twice (sales are keyed by their id).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from contracts import messages as m
from contracts.errors import ConfigError, MessageError
from contracts.usbbundle import encode_sales_bundle, registry_key_from_b64
from firmware.hostlink import RELEASE, sale_payload
from firmware.keyfile import read_key_file
from firmware.sale.journal import Journal

__all__ = ["Export", "export_sales", "load_identity", "registry_key", "unsent_payloads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    data: bytes          # the bundle file
    count: int           # sales in it
    skipped: int         # unacknowledged sales that no registry could store (left for an operator)


def unsent_payloads(journal: Journal, terminal: str, station: str) -> tuple[list[bytes], int]:
    """SALE payloads of what waits for the registry, as HostLink sends them: completed sales not yet
    acknowledged (oldest first), then releases of authorizations that got no answer. And the count of
    those that do not encode (HostLink parks them; here they are left out and counted)."""
    out: list[bytes] = []
    skipped = 0
    docs: list[Any] = [sale_payload(rec, terminal, station) for rec in journal.unsynced()]
    docs += [json.loads(doc) for doc in journal.values(RELEASE).values()]
    for doc in docs:
        try:
            out.append(m.encode(doc, m.SALE))
        except MessageError:
            skipped += 1
            log.error("sale left out of the export: it does not encode",
                      extra={"sale_id": doc.get("sale_id")})
    return out, skipped


def export_sales(journal: Journal, *, terminal: str, station: str, device_key: ec.EllipticCurvePrivateKey,
                 certificate_pem: str, registry: ec.EllipticCurvePublicKey, now: dt.datetime) -> Export:
    """The bundle of every unacknowledged sale. now: naive UTC."""
    payloads, skipped = unsent_payloads(journal, terminal, station)
    data = encode_sales_bundle(payloads, terminal=terminal, created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               certificate_pem=certificate_pem, device_key=device_key, registry_key=registry)
    log.info("sales exported for the registry", extra={"count": len(payloads), "skipped": skipped})
    return Export(data, len(payloads), skipped)


def load_identity(key_path: Path, cert_path: Path) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The device key (a 0600 PEM file, as provisioning writes it) and its certificate."""
    text = read_key_file(key_path)          # ConfigError when others can read it (not caught below)
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), None)
    except ValueError as exc:
        raise ConfigError(f"{key_path} does not hold a PEM private key", path=str(key_path)) from exc
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)):
        raise ConfigError(f"{key_path} holds no EC P-256 device key", path=str(key_path))
    try:
        cert_pem = cert_path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"device certificate {cert_path} cannot be read; provision the terminal",
                          path=str(cert_path)) from exc
    return key, cert_pem


def registry_key(config: dict[str, Any] | None) -> ec.EllipticCurvePublicKey:
    """The registry's bundle key from the body of the signed configuration the terminal runs."""
    text = (config or {}).get("registry_bundle_key", "")
    if not text:
        raise ConfigError("the configuration names no registry bundle key: import a configuration from "
                          "the registry first (forecourt usb import-config)", key="registry_bundle_key")
    return registry_key_from_b64(text)
