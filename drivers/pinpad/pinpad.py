"""PIN entry. Digits live only in this module, in a bytearray that is wiped after use.

The PIN block is ISO 9564-1 format 4 (AES, PAN-bound) made with psec, under the terminal's
PIN-encryption key. (Python's str is immutable: the one str psec needs cannot be wiped; it is
dropped at once and never logged.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from psec.pinblock import encipher_pinblock_iso_4

from firmware.errors import ConfigError, PinPadError

__all__ = ["KeySource", "PinEntryCancelled", "PinPad", "load_pin_key"]

MIN_DIGITS, MAX_DIGITS = 4, 12


class PinEntryCancelled(PinPadError):
    """The cardholder pressed CANCEL or entry timed out."""


class KeySource(Protocol):
    def read_key(self, timeout: float) -> str | None: ...


def load_pin_key(path: Path) -> bytes:
    """Read the AES PIN-encryption key (hex, 16/24/32 bytes) written by provisioning."""
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError as exc:
        raise ConfigError("PIN key file not found; provision the terminal", path=str(path)) from exc
    except ValueError as exc:
        raise ConfigError("PIN key file is not hex", path=str(path)) from exc
    if len(key) not in (16, 24, 32):
        raise ConfigError("PIN key must be an AES key of 16, 24 or 32 bytes", path=str(path))
    return key


class PinPad:
    def __init__(self, keys: KeySource, key: bytes) -> None:
        self._keys = keys
        self._key = key

    def read_pin_block(self, pan: str, timeout: float,
                       on_digits: Callable[[int], None] = lambda n: None) -> bytes:
        """Collect 4-12 digits until ENTER and return the 16-byte enciphered PIN block."""
        digits = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PinEntryCancelled("PIN entry timed out")
                key = self._keys.read_key(min(left, 0.5))
                if key is None:
                    continue
                if key == "CANCEL":
                    raise PinEntryCancelled("PIN entry cancelled")
                if key == "CLEAR":
                    _wipe(digits)
                    del digits[:]
                elif key == "ENTER":
                    if MIN_DIGITS <= len(digits) <= MAX_DIGITS:
                        return encipher_pinblock_iso_4(self._key, digits.decode(), pan)
                elif key.isdigit() and len(digits) < MAX_DIGITS:
                    digits.append(ord(key))
                on_digits(len(digits))
        finally:
            _wipe(digits)


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0
