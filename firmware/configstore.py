"""The terminal's signed configuration: each one offered is checked, the last good one kept on disk.

A configuration is run only when signed by a key in config-keys.json (written at provisioning: key id ->
base64 Ed25519 public key), for this terminal, within its validity, and newer than the one it runs
(contracts.signing). The last good one is kept in config.signed.json (atomic write, 0600: it holds the
attendants' PIN verifiers) and checked again at start; one that expired since still runs (it was good,
and a terminal that lost its link keeps selling) but is reported. Every refusal is logged with its reason
and counted. No I/O but the two files: publishing a refusal is the caller's (firmware.hostlink).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import ConfigError, MessageError
from contracts.signing import SignatureError, trusted_from_b64, verify_envelope
from firmware.keyfile import read_key_file, write_key_file

__all__ = ["CONFIG_FILE", "KEYS_FILE", "Accepted", "ConfigStore", "Refused", "load_config_keys",
           "write_config_keys"]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.signed.json"
KEYS_FILE = "config-keys.json"
OLD_VERSION = "old_version"      # a refusal reason besides contracts.signing.REASONS


@dataclass(frozen=True)
class Accepted:
    version: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    reason: str                  # contracts.signing.REASONS or OLD_VERSION
    version: int | None          # the version offered, when it could be read


def write_config_keys(state_dir: Path, keys: Mapping[str, str]) -> None:
    """Provisioning: the configuration keys the terminal trusts ({key id: base64 public key})."""
    trusted_from_b64(keys)                          # each key id must be its own key's
    write_key_file(state_dir / KEYS_FILE, json.dumps(dict(keys), sort_keys=True))


def load_config_keys(state_dir: Path) -> dict[str, Ed25519PublicKey]:
    """The trusted keys in state_dir; none (every configuration refused) when not provisioned yet."""
    path = state_dir / KEYS_FILE
    if not path.exists():
        log.warning("no configuration keys: every configuration is refused until provisioned",
                    extra={"path": str(path)})
        return {}
    damaged = ConfigError(f"configuration keys file is damaged: {path}", path=str(path))
    try:
        keys = json.loads(read_key_file(path))
        trusted = trusted_from_b64(keys) if isinstance(keys, dict) else None
    except (ValueError, MessageError) as exc:
        raise damaged from exc
    if trusted is None:
        raise damaged
    return trusted


class ConfigStore:
    """offer() each configuration received; .current is the body run (None: none yet), .version its
    version (0: none), .refusals the count per reason, .expired whether the one run has expired."""

    def __init__(self, state_dir: Path, trusted_keys: Mapping[str, Ed25519PublicKey] | None = None, *,
                 terminal: str, now: dt.datetime | None = None) -> None:
        self.path = state_dir / CONFIG_FILE
        self.terminal = terminal
        self.trusted = dict(trusted_keys) if trusted_keys is not None else load_config_keys(state_dir)
        self.refusals: collections.Counter[str] = collections.Counter()
        self.current: dict[str, Any] | None = None
        self.version = 0
        self._doc: dict[str, Any] | None = None
        self._load(now or _utcnow())

    def _load(self, now: dt.datetime) -> None:
        if not self.path.exists():
            return
        try:
            doc = m.decode(read_key_file(self.path).encode(), d.SIGNED_CONFIG)
            body = verify_envelope(doc, self.trusted, terminal=self.terminal, now=now, allow_expired=True)
        except (MessageError, UnicodeEncodeError) as exc:
            reason = exc.reason if isinstance(exc, SignatureError) else "malformed"
            self.refusals[reason] += 1
            log.error("stored configuration refused; running without one", extra={"reason": reason})
            return
        self._doc, self.current, self.version = doc, body, doc["version"]
        if self.expired(now):
            log.warning("stored configuration has expired; it runs until a newer one arrives",
                        extra={"version": self.version, "expires_at": doc["expires_at"]})

    def expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the configuration run is past its expiry (now: naive UTC)."""
        if self._doc is None:
            return False
        return (now or _utcnow()) >= m.parse_timestamp(self._doc["expires_at"])

    def offer(self, doc: Mapping[str, Any] | bytes,
              now: dt.datetime | None = None) -> Accepted | Refused | None:
        """Check a configuration (a SIGNED_CONFIG payload or its decoded document) and run it when good.
        None: it is the one already run (a retained message delivered again), nothing to do."""
        now = now or _utcnow()
        version: int | None = None
        try:
            if isinstance(doc, bytes):
                doc = m.decode(doc, d.SIGNED_CONFIG)
            version = doc.get("version") if isinstance(doc.get("version"), int) else None
            if self._doc is not None and dict(doc) == self._doc:
                return None
            body = verify_envelope(doc, self.trusted, terminal=self.terminal, now=now)
        except SignatureError as exc:
            return self._refuse(exc.reason, version)
        except MessageError:
            return self._refuse("malformed", None)
        if doc["version"] <= self.version:
            return self._refuse(OLD_VERSION, doc["version"])
        write_key_file(self.path, m.encode(doc, d.SIGNED_CONFIG).decode())
        self._doc, self.current, self.version = dict(doc), body, doc["version"]
        log.info("configuration accepted", extra={"version": self.version, "expires_at": doc["expires_at"]})
        return Accepted(self.version, body)

    def _refuse(self, reason: str, version: int | None) -> Refused:
        self.refusals[reason] += 1
        log.warning("configuration refused", extra={"reason": reason, "offered_version": version,
                                                    "running_version": self.version})
        return Refused(reason, version)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
