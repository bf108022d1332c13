"""The terminal's sales for a USB stick: every sale the registry has not acknowledged, in one bundle file
(contracts.usbbundle) encrypted to the registry and signed with the device key.

An export marks nothing: a stick may be lost, broken or never read. A sale leaves the backlog only when the
registry acknowledges it, as ever (HostLink: once the link is back, each sale is sent again and the
registry answers "duplicate" for one it got from a stick). Each export therefore carries every unacknowledged
sale, and importing an older bundle after a newer one stores nothing twice (sales are keyed by their id).

The chip purse's signed records ride in the same file (issue 18): every record still in the purse outbox
(firmware.programs.purse.book), as PURSE_RECORDS lines after the sales, grouped by the SAM id each record
names (its terminal field), at most MAX_ITEMS per line. As for sales, exporting leaves them in the outbox:
only the registry's acknowledgement removes them, and the registry counts a record it already has once.
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
from contracts.purse_messages import MAX_ITEMS, PURSE_RECORDS, PURSE_RECORDS_KIND
from contracts.purse_records import SIGNED_LEN
from contracts.usbbundle import encode_sales_bundle, registry_key_from_b64
from firmware.hostlink import RELEASE, sale_payload
from firmware.keyfile import read_key_file
from firmware.programs.purse.book import Outgoing, PurseBook
from firmware.sale.journal import Journal

__all__ = ["Export", "export_sales", "load_identity", "purse_payloads", "registry_key", "unsent_payloads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Export:
    data: bytes          # the bundle file
    count: int           # sales in it
    skipped: int         # unacknowledged sales or purse records that do not encode (left out, logged)
    records: int = 0     # chip purse records in it


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


def _item(out: Outgoing) -> dict[str, Any]:
    item: dict[str, Any] = {"record": out.signed.hex()}
    if out.sam_sequence is not None and out.sam_mac is not None:
        item |= {"sam_seq": out.sam_sequence, "sam_mac": out.sam_mac.hex()}
    return item


# the record's terminal field: the SAM id of the terminal where the card signed it (contracts.purse_records),
# which names the group when the outbox does not know the SAM that MACed the record
_SAM_AT = slice(24, 32)


def purse_payloads(journal: Journal, terminal: str) -> tuple[list[bytes], int, int]:
    """PURSE_RECORDS payloads of the purse outbox (one per SAM id and MAX_ITEMS records, in the outbox's
    order), the number of records in them, and the number left out because they do not encode."""
    groups: dict[str, list[dict[str, Any]]] = {}
    skipped = 0
    for out in PurseBook(journal).outgoing():
        sam_id, item = (out.sam_id or out.signed[_SAM_AT]).hex(), _item(out)   # the SAM that MACed it
        doc = {"kind": PURSE_RECORDS_KIND, "terminal": terminal, "sam_id": sam_id, "items": [item]}
        try:
            if len(out.signed) != SIGNED_LEN:
                raise MessageError("a signed purse record is 60 bytes", field="record")
            m.encode(doc, PURSE_RECORDS)            # validates the item alone
        except MessageError:
            skipped += 1
            log.error("purse record left out of the export: it does not encode", extra={"key": out.key})
            continue
        groups.setdefault(sam_id, []).append(item)
    payloads = [m.encode({"kind": PURSE_RECORDS_KIND, "terminal": terminal, "sam_id": sam_id,
                          "items": items[at:at + MAX_ITEMS]}, PURSE_RECORDS)
                for sam_id, items in groups.items() for at in range(0, len(items), MAX_ITEMS)]
    return payloads, sum(len(items) for items in groups.values()), skipped


def export_sales(journal: Journal, *, terminal: str, station: str, device_key: ec.EllipticCurvePrivateKey,
                 certificate_pem: str, registry: ec.EllipticCurvePublicKey, now: dt.datetime) -> Export:
    """The bundle of every unacknowledged sale and chip purse record. now: naive UTC."""
    payloads, skipped = unsent_payloads(journal, terminal, station)
    records, record_count, records_skipped = purse_payloads(journal, terminal)
    data = encode_sales_bundle(payloads + records, terminal=terminal,
                               created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), certificate_pem=certificate_pem,
                               device_key=device_key, registry_key=registry)
    log.info("sales exported for the registry", extra={"count": len(payloads), "records": record_count,
                                                       "skipped": skipped + records_skipped})
    return Export(data, len(payloads), skipped + records_skipped, record_count)


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
