"""A configuration from a USB stick: a bundle file (contracts.usbbundle) offered to the terminal's
ConfigStore, which checks it exactly as one from the broker (signature, terminal, version, expiry).

The same file twice changes nothing: the store answers a configuration identical to the one it runs with
None (no check, no refusal counted), reported here as unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from contracts.usbbundle import UsbBundleError, decode_config_bundle
from firmware.configstore import ConfigStore, Refused

__all__ = ["ConfigImport", "import_config"]

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
