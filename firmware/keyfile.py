"""Secret keys the terminal makes for itself on first start (card-token key, advice-store key)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from contracts.errors import ConfigError

__all__ = ["load_or_create_key"]


def load_or_create_key(path: Path, size: int = 32) -> bytes:
    """The key in path (hex); created with mode 0600 from the OS random source if absent."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(size))
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError as exc:
        raise ConfigError("key file is not hex", path=str(path)) from exc
    if len(key) != size:
        raise ConfigError("key file holds a key of the wrong size", path=str(path), expected=size)
    return key
