"""Key injection: the technician's tool writes the terminal's PIN key and DUKPT initial key into its state
directory, each atomically with mode 0600 (the host simulator provisions its terminal the same way).

In production these keys arrive in a certified PIN pad from a key-injection facility (ANSI X9.24-1
key loading, TR-31 key blocks), never as files; see docs/security.md.
"""

from __future__ import annotations

from pathlib import Path

from contracts.errors import ConfigError
from firmware.keyfile import write_key_file

__all__ = ["AES_KEY_SIZES", "install_dukpt", "install_pin_key"]

AES_KEY_SIZES = (16, 24, 32)


def install_pin_key(state_dir: Path, key: bytes, name: str = "pek.hex") -> Path:
    """The fleet host's AES PIN-encryption key as hex (read by drivers.pinpad.load_pin_key)."""
    if len(key) not in AES_KEY_SIZES:
        raise ConfigError("PIN key must be an AES key of 16, 24 or 32 bytes", size=len(key))
    path = state_dir / name
    write_key_file(path, key.hex().upper() + "\n")
    return path


def install_dukpt(state_dir: Path, initial_key: bytes, key_id: bytes, *, name: str = "dukpt.toml",
                  note: str = "written by forecourt provisioning") -> Path:
    """The PIN pad's AES DUKPT initial key and its 8-byte initial key ID (X9.24-3-2017, 6.1), as TOML
    (read by firmware.terminal.dukpt.load_dukpt)."""
    if len(initial_key) not in AES_KEY_SIZES:
        raise ConfigError("DUKPT initial key must be an AES key of 16, 24 or 32 bytes", size=len(initial_key))
    if len(key_id) != 8:
        raise ConfigError("DUKPT initial key ID must be 8 bytes", size=len(key_id))
    path = state_dir / name
    write_key_file(path, f'# {note}\ninitial_key = "{initial_key.hex().upper()}"\n'
                         f'key_id = "{key_id.hex().upper()}"\n')
    return path
