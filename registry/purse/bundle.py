"""Chip purse records carried in: over MQTT (a PURSE_RECORDS payload) or on a flash-drive bundle.

A bundle is the terminal's ordinary sales bundle (contracts.usbbundle): its PURSE_RECORDS lines sit beside
the SALE lines under the same encryption and device signature. import_purse_records checks the file as a
sales import does (registry.usbimport.check_bundle: certificate, device, signature, recipient), then puts
its records through the same ingest as MQTT, with source "bundle:<SHA-256 of the file>". Ingest stores each
distinct record once, so a bundle imported twice, or records that came by MQTT first, count once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session

from contracts.errors import MessageError
from contracts.purse_messages import PURSE_RECORDS, decode, is_purse_line, record_items
from contracts.usbbundle import UsbBundleError, open_lines
from registry.purse.issuer import IssuerKeys
from registry.purse.records import IngestReport, Item, ingest
from registry.usbimport import check_bundle

__all__ = ["import_purse_records", "ingest_upload", "items_of"]


def items_of(doc: Mapping[str, Any]) -> list[Item]:
    """The ingest items of a decoded PURSE_RECORDS payload (its SAM id on each)."""
    sam = bytes.fromhex(doc["sam_id"])
    return [Item(i.record, sam if i.sam_mac is not None else None, i.sam_seq, i.sam_mac)
            for i in record_items(doc)]


def ingest_upload(s: Session, issuer: IssuerKeys, doc: Mapping[str, Any], *,
                  now: dt.datetime) -> IngestReport:
    """A PURSE_RECORDS payload from MQTT (decoded): its records, source "mqtt:<terminal>"."""
    return ingest(s, issuer, items_of(doc), source=f"mqtt:{doc['terminal']}", now=now)


def import_purse_records(s: Session, raw: bytes, *, issuer: IssuerKeys,
                         bundle_key: ec.EllipticCurvePrivateKey, ca_pem: str,
                         now: dt.datetime) -> IngestReport:
    """Check a bundle file and ingest the chip purse records in it (the caller commits). UsbBundleError as
    registry.usbimport for a file that is not believed; wrong_terminal for records of another terminal."""
    bundle = check_bundle(s, raw, ca_pem=ca_pem, now=now)
    items: list[Item] = []
    for line in open_lines(bundle, bundle_key):
        try:
            if not is_purse_line(line):
                continue
            doc = decode(line, PURSE_RECORDS)
        except MessageError as exc:
            raise UsbBundleError("bundle holds malformed purse records", "malformed",
                                 bundle_id=bundle.bundle_id, **exc.context) from exc
        if doc["terminal"] != bundle.terminal:
            raise UsbBundleError("bundle holds records of another terminal", "wrong_terminal",
                                 bundle_id=bundle.bundle_id)
        items += items_of(doc)
    return ingest(s, issuer, items, source=f"bundle:{hashlib.sha256(raw).hexdigest()}", now=now)
