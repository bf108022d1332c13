"""The registry's secret keys: one for card tokens, one for PIN verifiers. Created on first start."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from contracts.cards import card_token
from contracts.errors import ConfigError

__all__ = ["RegistryKeys", "load_or_create_keys"]


@dataclass(frozen=True, repr=False)
class RegistryKeys:
    card_key: bytes
    pin_key: bytes

    def token(self, pan: str) -> str:
        return card_token(self.card_key, pan)

    def pin_verifier(self, token: str, pin: str) -> str:
        """Keyed verifier of a PIN, bound to the card's token; the PIN itself is never stored."""
        return hmac.new(self.pin_key, f"{token}:{pin}".encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "RegistryKeys(<secret>)"


def load_or_create_keys(path: Path) -> RegistryKeys:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"card_key": secrets.token_hex(32), "pin_key": secrets.token_hex(32)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
    try:
        doc = json.loads(path.read_text())
        return RegistryKeys(bytes.fromhex(doc["card_key"]), bytes.fromhex(doc["pin_key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("registry key file is damaged", path=str(path)) from exc
