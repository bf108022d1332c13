"""The registry's secret keys, held apart from its database.

- registry-keys.json: the card-token key and the PIN-verifier key (created on first start);
- the key-encryption key (KEK, default kek.hex next to it; `forecourt registry --kek PATH`): every
  terminal's PIN key is stored in the database wrapped under it, never in clear. A copy of the database
  (a dump, a backup, a replica) alone gives no PIN key. In production the KEK lives in an HSM or a cloud
  KMS and the unwrap happens there; this file is the stand-in (docs/security.md).

Key files are written atomically with mode 0600 and refused when other users can open them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.cards import card_token
from contracts.errors import ConfigError
from registry.models import Device

__all__ = ["KEK_PREFIX", "RegistryKeys", "load_or_create_keys", "seal_device_keys", "write_atomic"]

log = logging.getLogger(__name__)

# A stored device key: "kek1:" + base64 of the key wrapped with AES key wrap (NIST SP 800-38F KW,
# RFC 3394) under a 256-bit KEK. KW is the NIST mode made for wrapping keys (integrity check included,
# no nonce), and its 40 bytes for a 32-byte key fit the existing devices.pin_key_hex VARCHAR(64)
# (an AES-GCM record, 12 + 32 + 16 bytes, would not). A new KEK or scheme gets a new prefix.
KEK_PREFIX = "kek1:"
# A card number under the KEK: "num1:" + base64(12-byte nonce + AES-256-GCM ciphertext and tag), with the
# purpose as associated data so a sealed number never opens as anything else (NIST SP 800-38D).
NUMBER_PREFIX = "num1:"
_NUMBER_AAD = b"forecourt card number v1"
# Any other secret under the KEK (the chip purse's issuer masters and CA key, registry.purse.issuer):
# "sec1:" + base64(12-byte nonce + AES-256-GCM ciphertext and tag), the caller's label as associated data, so
# a sealed secret opens only as what it was sealed for (a wrapped LOAD master never opens as the AUTH one).
SECRET_PREFIX = "sec1:"
_AES_SIZES = (16, 24, 32)


@dataclass(frozen=True, repr=False)
class RegistryKeys:
    card_key: bytes
    pin_key: bytes
    kek: bytes = field(default=b"")

    def token(self, pan: str) -> str:
        return card_token(self.card_key, pan)

    def pin_verifier(self, token: str, pin: str) -> str:
        """Keyed verifier of a PIN, bound to the card's token; the PIN itself is never stored."""
        return hmac.new(self.pin_key, f"{token}:{pin}".encode(), hashlib.sha256).hexdigest()

    def seal_device_key(self, key: bytes) -> str:
        """A terminal's AES PIN key as stored in the database: wrapped under the KEK."""
        if len(key) not in _AES_SIZES:
            raise ConfigError("device PIN key must be an AES key of 16, 24 or 32 bytes", size=len(key))
        return KEK_PREFIX + base64.b64encode(aes_key_wrap(self._kek(), key)).decode("ascii")

    def device_key(self, stored: str) -> bytes:
        """The PIN key from its stored form; a row that is not sealed, or not under this KEK, is refused."""
        if not stored.startswith(KEK_PREFIX):
            raise ConfigError("device PIN key is stored unsealed")
        try:
            return aes_key_unwrap(self._kek(), base64.b64decode(stored[len(KEK_PREFIX):], validate=True))
        except (InvalidUnwrap, binascii.Error, ValueError) as exc:
            raise ConfigError("device PIN key does not unwrap under this KEK") from exc

    def seal_number(self, number: str) -> str:
        """A card number (or tag "U..." number) as stored: AES-GCM under the KEK, a fresh nonce each."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._kek()).encrypt(nonce, number.encode("ascii"), _NUMBER_AAD)
        return NUMBER_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open_number(self, sealed: str) -> str:
        """The card number from its stored form; one not sealed under this KEK is refused (never shown)."""
        if not sealed.startswith(NUMBER_PREFIX):
            raise ConfigError("card number is not sealed")
        try:
            raw = base64.b64decode(sealed[len(NUMBER_PREFIX):], validate=True)
            return AESGCM(self._kek()).decrypt(raw[:12], raw[12:], _NUMBER_AAD).decode("ascii")
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise ConfigError("card number does not open under this KEK") from exc

    def seal_secret(self, secret: bytes, label: str) -> str:
        """A secret as stored: AES-GCM under the KEK, bound to `label` (what the secret is)."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._kek()).encrypt(nonce, secret, b"forecourt secret v1|" + label.encode())
        return SECRET_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open_secret(self, stored: str, label: str) -> bytes:
        """The secret sealed under `label`; one not sealed, under another KEK or label, is refused."""
        if not stored.startswith(SECRET_PREFIX):
            raise ConfigError("secret is not sealed", label=label)
        try:
            raw = base64.b64decode(stored[len(SECRET_PREFIX):], validate=True)
            return AESGCM(self._kek()).decrypt(raw[:12], raw[12:], b"forecourt secret v1|" + label.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise ConfigError("secret does not open under this KEK", label=label) from exc

    def _kek(self) -> bytes:
        if len(self.kek) != 32:
            raise ConfigError("the registry has no key-encryption key loaded")
        return self.kek

    def __repr__(self) -> str:
        return "RegistryKeys(<secret>)"


def seal_device_keys(session: Session, keys: RegistryKeys) -> int:
    """At start: wrap every device key still stored in clear (rows from before the KEK), and check that
    every sealed one unwraps, so a wrong KEK stops the registry instead of declining every PIN (and
    blocking cards). Returns how many rows were sealed."""
    sealed, wrong = 0, []
    for device in session.scalars(select(Device)).all():
        stored = device.pin_key_hex
        if stored.startswith(KEK_PREFIX):
            try:
                keys.device_key(stored)
            except ConfigError:
                wrong.append(device.id)
            continue
        try:
            device.pin_key_hex = keys.seal_device_key(bytes.fromhex(stored))
        except ValueError:
            wrong.append(device.id)
            continue
        sealed += 1
    if wrong:
        session.rollback()
        raise ConfigError("device PIN keys do not unwrap under this KEK (wrong --kek?)",
                          devices=",".join(wrong))
    session.commit()
    if sealed:
        log.info("device PIN keys sealed under the KEK", extra={"devices": sealed})
    return sealed


def load_or_create_keys(path: Path, kek_path: Path | None = None) -> RegistryKeys:
    """The keys in path and the KEK in kek_path (default kek.hex beside path); each made on first start."""
    if not path.exists():
        doc = {"card_key": secrets.token_hex(32), "pin_key": secrets.token_hex(32)}
        with contextlib.suppress(FileExistsError):
            _write_private(path, json.dumps(doc))
    kek_path = kek_path if kek_path is not None else path.with_name("kek.hex")
    if not kek_path.exists():
        with contextlib.suppress(FileExistsError):
            _write_private(kek_path, secrets.token_hex(32) + "\n")
    try:
        doc = json.loads(_read_private(path))
        card_key, pin_key = bytes.fromhex(doc["card_key"]), bytes.fromhex(doc["pin_key"])
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("registry key file is damaged", path=str(path)) from exc
    try:
        kek = bytes.fromhex(_read_private(kek_path).strip())
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError("KEK file is not hex", path=str(kek_path)) from exc
    if len(kek) != 32:
        raise ConfigError("KEK file must hold a 256-bit AES key", path=str(kek_path))
    return RegistryKeys(card_key, pin_key, kek)


# The same private-file rules as firmware.keyfile (the registry may not import the terminal's code).

def write_atomic(path: Path, text: str, *, mode: int, replace: bool) -> None:
    """Write text to path with `mode` whatever the umask, atomically (a reader sees the old file or the
    whole new one); replace=False never writes over an existing file (FileExistsError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _write_private(path: Path, text: str) -> None:
    """Create path with mode 0600, atomically and never over an existing file (FileExistsError)."""
    write_atomic(path, text, mode=0o600, replace=False)


def _read_private(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise ConfigError(f"key file not found: {path}", path=str(path)) from exc
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"key file {path} is not a regular file", path=str(path))
        if st.st_mode & 0o077:
            raise ConfigError(f"key file {path} can be read by other users (mode {st.st_mode & 0o777:04o}); "
                              "it must be 0600: chmod 600 it", path=str(path))
        return f.read()
