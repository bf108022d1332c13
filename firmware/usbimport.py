"""What a USB stick brings the terminal (contracts.usbbundle): a configuration and a receipt.

A configuration bundle is offered to the ConfigStore, which checks it exactly as one from the broker
(signature, terminal, version, expiry). The same file twice changes nothing: the store answers a
configuration identical to the one it runs with None (no check, no refusal counted), reported unchanged.

A receipt (the registry's signed answers to a sales bundle it imported) does what those answers would have
done over MQTT (firmware.hostlink): "stored" and "duplicate" mark a sale synced, "rejected" parks it for an
operator, and a release it answers is dropped. The same receipt twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.errors import JournalError
from contracts.usbbundle import UsbBundleError, decode_config_bundle, decode_receipt
from firmware.configstore import ConfigStore, Refused
from firmware.hostlink import RELEASE
from firmware.sale.journal import Journal

__all__ = ["ConfigImport", "ReceiptImport", "import_config", "import_receipt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigImport:
    status: str          # "installed" or "unchanged"
    version: int         # the version the terminal runs now


def import_config(store: ConfigStore, raw: bytes, *, terminal: str, now: dt.datetime) -> ConfigImport:
    """Offer the configuration in a bundle file to store. UsbBundleError when the file is malformed, for
    another terminal, or refused by the store (reason: bad_signature, unknown_key, expired, old_version ...).
    now: naive UTC."""
    bundle = decode_config_bundle(raw)
    if bundle.terminal != terminal:
        raise UsbBundleError("configuration bundle is for another terminal", "wrong_terminal",
                             terminal=bundle.terminal)
    result = store.offer(bundle.config, now)
    if result is None:
        log.info("configuration from the stick is the one running", extra={"version": store.version})
        return ConfigImport("unchanged", store.version)
    if isinstance(result, Refused):
        raise UsbBundleError("configuration refused", result.reason, version=bundle.config.get("version"),
                             running=store.version)
    log.info("configuration installed from a stick", extra={"version": store.version})
    return ConfigImport("installed", store.version)


@dataclass(frozen=True)
class ReceiptImport:
    synced: int          # sales marked synced now
    parked: int          # sales the registry rejected, set aside for an operator
    released: int        # releases of unanswered authorizations the registry answered
    already: int         # acknowledged before (by MQTT or an earlier receipt)
    unknown: int         # sales this journal does not hold


def import_receipt(journal: Journal, raw: bytes, *, terminal: str,
                   trusted: Mapping[str, Ed25519PublicKey]) -> ReceiptImport:
    """Apply a receipt file (checked against the configuration keys the terminal trusts)."""
    receipt = decode_receipt(raw, trusted, terminal=terminal)
    counts = {"synced": 0, "parked": 0, "released": 0, "already": 0, "unknown": 0}
    for ack in receipt.acks:
        sale_id = ack["sale_id"]
        if journal.get_value(RELEASE + sale_id) is not None:
            journal.delete(RELEASE + sale_id)          # whatever the answer: nothing is held any more
            counts["released"] += 1
            continue
        try:
            rec = journal.get(sale_id)
        except JournalError:
            counts["unknown"] += 1
            continue
        if rec.synced or journal.parked_reason(sale_id) is not None:
            counts["already"] += 1
        elif ack["status"] in ("stored", "duplicate"):
            journal.mark(sale_id, "synced")
            counts["synced"] += 1
        else:
            journal.park(sale_id, ack["reason"] or "rejected")
            counts["parked"] += 1
    log.info("receipt imported", extra={"bundle_id": receipt.bundle_id, **counts})
    return ReceiptImport(**counts)
