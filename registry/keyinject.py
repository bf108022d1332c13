"""Key injection, registry side: the keys a new terminal gets, derived from the registry's base keys and
sealed to the device's own key (contracts.sealbox), never shown or logged.

- the fleet PIN key: HKDF-SHA256 (RFC 5869) of the registry's PIN base key with the device id in the info,
  so each device has its own key and the registry can derive it again; stored wrapped under the KEK
  (RegistryKeys.seal_device_key) like every device's PIN key;
- the PIN pad's AES DUKPT initial key: derived from the BDK and a fresh initial key ID (ANSI X9.24-3-2017
  6.3.1, drivers.pinpad.dukpt_aes). The 8-byte initial key ID is BDK ID (4 bytes) | derivation ID (4 bytes)
  (X9.24-3-2017 6.1); the BDK ID is the BDK's AES-CMAC key check value (X9.24-1-2017 Annex A: the CMAC of a
  zero block), cut to 4 bytes, so a host can tell which BDK a KSN belongs to.

Key files in the registry's state directory, mode 0600 (registry.keys' rules): pin-base-key.hex (made on
first use), bdk.hex (put there by whoever holds the BDK; the simulator writes its X9.24-3 test BDK).
In production both live in an HSM and this derivation runs there (docs/security.md).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from contracts.errors import ConfigError
from contracts.sealbox import keys_context, seal
from drivers.pinpad.dukpt_aes import derive_initial_key
from registry.keys import RegistryKeys, _read_private, _write_private

__all__ = ["BDK_FILE", "PIN_BASE_FILE", "KeyInjector", "install_bdk"]

PIN_BASE_FILE = "pin-base-key.hex"
BDK_FILE = "bdk.hex"
PIN_INFO = b"forecourt fleet pin key v1|"   # HKDF label; the device id follows
PIN_KEY_SIZE = 16                           # AES-128, as the PIN pads' keys today
_AES_SIZES = (16, 24, 32)


@dataclass(frozen=True, repr=False)
class KeyInjector:
    pin_base: bytes
    bdk: bytes

    @classmethod
    def load(cls, state_dir: Path) -> KeyInjector:
        """The base keys from state_dir; the PIN base key is made on first use, the BDK must be there."""
        base_path = state_dir / PIN_BASE_FILE
        if not base_path.exists():
            with contextlib.suppress(FileExistsError):
                _write_private(base_path, secrets.token_hex(32) + "\n")
        return cls(_hex_key(base_path, (32,)), _hex_key(state_dir / BDK_FILE, _AES_SIZES))

    def pin_key(self, device_id: str) -> bytes:
        """The fleet PIN key of device_id (the same every time for the same id)."""
        return HKDF(algorithm=hashes.SHA256(), length=PIN_KEY_SIZE, salt=None,
                    info=PIN_INFO + device_id.encode("ascii")).derive(self.pin_base)

    def bdk_id(self) -> bytes:
        cmac = CMAC(algorithms.AES(self.bdk))
        cmac.update(bytes(16))
        return cmac.finalize()[:4]

    def new_key_id(self, taken: Callable[[str], bool]) -> bytes:
        """A fresh initial key ID under this BDK: its derivation ID random and not yet given to a device."""
        for _ in range(64):
            key_id = self.bdk_id() + secrets.token_bytes(4)
            if not taken(key_id.hex().upper()):
                return key_id
        raise ConfigError("no free DUKPT initial key ID found under this BDK")

    def sealed_keys(self, keys: RegistryKeys, stored_pin_key: str, key_id: bytes,
                    public_key: ec.EllipticCurvePublicKey, *, device_id: str, request_id: str) -> str:
        """The device's keys as JSON, sealed to its public key for this enrollment request. The PIN key is
        the one stored for the device (a seeded device keeps its own); nothing here is logged."""
        doc = {"pin_key": keys.device_key(stored_pin_key).hex(),
               "dukpt_initial_key": derive_initial_key(self.bdk, key_id).hex(),
               "dukpt_key_id": key_id.hex()}
        return seal(public_key, json.dumps(doc, sort_keys=True).encode("ascii"),
                    context=keys_context(device_id, request_id))

    def __repr__(self) -> str:
        return "KeyInjector(<secret>)"


def install_bdk(state_dir: Path, bdk: bytes) -> Path:
    """Put a BDK in the registry's state dir (0600; kept when one is there): the simulator's test BDK."""
    if len(bdk) not in _AES_SIZES:
        raise ConfigError("a BDK is an AES key of 16, 24 or 32 bytes", size=len(bdk))
    path = state_dir / BDK_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            _write_private(path, bdk.hex().upper() + "\n")
    return path


def _hex_key(path: Path, sizes: tuple[int, ...]) -> bytes:
    text = _read_private(path).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"key file {path} is not hex", path=str(path)) from exc
    if len(key) not in sizes:
        raise ConfigError(f"key file {path} must hold a key of {' or '.join(str(8 * s) for s in sizes)} bits",
                          path=str(path))
    return key
