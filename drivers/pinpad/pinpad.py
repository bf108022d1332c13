"""PIN entry. Digits live only in this module, in a bytearray that is wiped after use.

The PIN block is ISO 9564-1 format 4 (AES, PAN-bound) made with psec, under the terminal's
PIN-encryption key; for a bank acquirer under AES DUKPT it is format 4 under the AES working key or format 0
(8 bytes, the ISO 8583:1987 field 52) under a 2TDEA working key of the same initial key, as the acquirer's
dialect says. (Python's str is immutable: the one str psec needs cannot be wiped; it is
dropped at once and never logged.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, modes
from psec.pinblock import encipher_pinblock_iso_4, encode_pinblock_iso_0

from contracts.errors import ConfigError, PinPadError
from contracts.iso8583_dialect import PIN_ISO0_TDEA2, PIN_ISO4_AES
from drivers.pinpad.dukpt_aes import TerminalDukpt

try:  # cryptography >= 43 keeps TDES in "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - cryptography 42
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

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
    """PIN entry. Online PINs leave enciphered: format 4 under a static key for the fleet host; for bank
    acquirers under a DUKPT key per transaction, format 0 (2TDEA) or 4 (AES) as the acquirer takes. An
    offline PIN leaves only as the format 2 plaintext block the chip card verifies (EMV Book 3 6.5.12),
    handed over in a bytearray to wipe."""

    def __init__(self, keys: KeySource, key: bytes, dukpt: TerminalDukpt | None = None, *,
                 more_time: float = 30.0) -> None:
        """more_time: seconds CLEAR adds to the entry when no digit is entered (the time left is capped
        at timeout + more_time however often it is pressed), for a cardholder who needs longer."""
        self._keys = keys
        self._key = key
        self._dukpt = dukpt
        self.more_time = more_time

    @property
    def dukpt_counter(self) -> int | None:
        """The next DUKPT transaction counter (to persist after each PIN block); None when exhausted."""
        return None if self._dukpt is None else self._dukpt.counter

    def read_pin_block(self, pan: str, timeout: float,
                       on_digits: Callable[[int], None] = lambda n: None) -> bytes:
        """Collect 4-12 digits until ENTER and return the 16-byte format 4 block under the static key."""
        digits = self._collect(timeout, on_digits)
        try:
            return encipher_pinblock_iso_4(self._key, digits.decode(), pan)
        finally:
            _wipe(digits)

    def read_dukpt_pin_block(self, pan: str, timeout: float,
                             on_digits: Callable[[int], None] = lambda n: None, *,
                             fmt: str = PIN_ISO0_TDEA2) -> tuple[bytes, bytes]:
        """(KSN, PIN block) under the next AES DUKPT PIN-encryption key (ANSI X9.24-3-2017). fmt "iso0-tdea2":
        an 8-byte format 0 block under the 2TDEA working key (6.3.3); "iso4-aes": a 16-byte format 4 block
        under the AES working key."""
        if self._dukpt is None:
            raise PinPadError("no DUKPT key loaded; provision the PIN pad")
        if fmt not in (PIN_ISO0_TDEA2, PIN_ISO4_AES):
            raise PinPadError("unknown PIN block format", fmt=fmt)
        digits = self._collect(timeout, on_digits)
        try:
            if fmt == PIN_ISO4_AES:
                ksn, key = self._dukpt.next_transaction("pin_encryption")
                return ksn, encipher_pinblock_iso_4(key, digits.decode(), pan)
            ksn, key = self._dukpt.next_transaction("pin_encryption", "TDEA2")
            return ksn, _encipher_iso_0(key, digits.decode(), pan)
        finally:
            _wipe(digits)

    def read_offline_pin(self, timeout: float,
                         on_digits: Callable[[int], None] = lambda n: None) -> bytearray:
        """The ISO 9564 format 2 plaintext block for VERIFY; the caller wipes it after the command."""
        digits = self._collect(timeout, on_digits)
        try:
            nibbles = bytearray([0x2, len(digits)]) + bytearray(d - 0x30 for d in digits)
            nibbles += bytearray([0xF] * (16 - len(nibbles)))
            block = bytearray((nibbles[i] << 4) | nibbles[i + 1] for i in range(0, 16, 2))
            _wipe(nibbles)
            return block
        finally:
            _wipe(digits)

    def _collect(self, timeout: float, on_digits: Callable[[int], None]) -> bytearray:
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
                    if not digits:                     # nothing to clear: the cardholder asks for time
                        now = time.monotonic()
                        deadline = now + min(deadline - now + self.more_time, timeout + self.more_time)
                    _wipe(digits)
                    del digits[:]
                elif key == "ENTER":
                    if MIN_DIGITS <= len(digits) <= MAX_DIGITS:
                        return digits
                elif len(key) == 1 and "0" <= key <= "9" and len(digits) < MAX_DIGITS:   # one ASCII digit
                    digits.append(ord(key))
                on_digits(len(digits))
        except BaseException:
            _wipe(digits)
            raise


def _encipher_iso_0(key16: bytes, pin: str, pan: str) -> bytes:
    """ISO 9564-1 format 0 (psec builds the clear block) under a 2TDEA key, TDEA-ECB with K1K2K1."""
    clear = bytearray(encode_pinblock_iso_0(pin, pan))
    try:
        encryptor = Cipher(TripleDES(key16 + key16[:8]), modes.ECB()).encryptor()
        return encryptor.update(bytes(clear)) + encryptor.finalize()
    finally:
        _wipe(clear)


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0
