"""The issuer's purse keys (docs/chip-wallets.md "Key hierarchy", docs/chip-wallet-registry.md).

One random master key per purpose (AUTH, RECORD, LOAD, ADMIN, SAM) and version, and the issuer CA's P-256
key, each stored in the database sealed under the registry KEK (registry.keys.seal_secret, AES-256-GCM
bound to a label naming purpose and version): the KEK file stands in for the HSM. A master is unsealed in
memory only to derive one card's or SAM's key (contracts.purse_keys) and is never kept, logged or shown.

Rotation makes a new version of one purpose's master; older versions stay usable for checks until retired,
and a record made under a retired version is flagged (registry.purse.records).
"""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.purse_keys import MAX_VERSION, Purpose, derive_card_key, derive_sam_key
from registry.keys import RegistryKeys
from registry.purse_models import IssuerKey

__all__ = ["CA", "MASTER_LEN", "IssuerKeys", "PurseKeyMissing"]

MASTER_LEN = 16          # AES-128 masters (contracts.purse_keys accepts 16 or 32)
CA = "ca"                # IssuerKey.purpose of the issuer CA key


class PurseKeyMissing(ConfigError):
    """No issuer key of that purpose and version (never made, or a record names a version never used)."""


def _label(purpose: str, version: int) -> str:
    return f"purse issuer {purpose} v{version}"


class IssuerKeys:
    """The sealed issuer keys of one registry; derives card and SAM keys on demand. Load it with `load`
    (which makes version 1 of every master and the CA key on first use: the caller commits)."""

    def __init__(self, keys: RegistryKeys, rows: list[IssuerKey]) -> None:
        self._keys = keys
        self._sealed = {(r.purpose, r.version): r.sealed for r in rows}
        self._retired = {(r.purpose, r.version) for r in rows if r.status == "retired"}

    @classmethod
    def load(cls, s: Session, keys: RegistryKeys, *, now: dt.datetime) -> IssuerKeys:
        rows = list(s.scalars(select(IssuerKey)))
        have = {r.purpose for r in rows}
        for purpose in Purpose:
            if purpose.value.decode() not in have:
                rows.append(_new_master(s, keys, purpose.value.decode(), 1, now))
        if CA not in have:
            ca = ec.generate_private_key(ec.SECP256R1())
            scalar = ca.private_numbers().private_value.to_bytes(32, "big")
            row = IssuerKey(purpose=CA, version=1, sealed=keys.seal_secret(scalar, _label(CA, 1)),
                            status="active", created_at=now)
            s.add(row)
            rows.append(row)
        s.flush()
        return cls(keys, rows)

    def versions(self, purpose: Purpose) -> list[int]:
        """The versions of a purpose's master, oldest first (retired ones included)."""
        name = purpose.value.decode()
        return sorted(v for p, v in self._sealed if p == name)

    def current_version(self, purpose: Purpose) -> int:
        """The newest version not retired: what new cards, loads and scripts use."""
        name = purpose.value.decode()
        live = [v for v in self.versions(purpose) if (name, v) not in self._retired]
        if not live:
            raise PurseKeyMissing("no live issuer key of this purpose", purpose=name)
        return max(live)

    def retired(self, purpose: Purpose, version: int) -> bool:
        return (purpose.value.decode(), version) in self._retired

    def _master(self, purpose: Purpose, version: int) -> bytes:
        name = purpose.value.decode()
        sealed = self._sealed.get((name, version))
        if sealed is None:
            raise PurseKeyMissing("no issuer key of this purpose and version", purpose=name, version=version)
        return self._keys.open_secret(sealed, _label(name, version))

    def card_key(self, purse_id: bytes, purpose: Purpose, version: int) -> bytes:
        """The card's own key of this purpose and version (what personalisation wrote on the card)."""
        return derive_card_key(self._master(purpose, version), purse_id, purpose, version=version)

    def sam_key(self, sam_id: bytes, version: int) -> bytes:
        """A SAM's MAC key (provisioning seals it to the SAM; the registry checks SAM MACs with it)."""
        return derive_sam_key(self._master(Purpose.SAM, version), sam_id, version=version)

    def rotate(self, s: Session, purpose: Purpose, *, now: dt.datetime) -> int:
        """Make the next version of a purpose's master; the new version (older ones stay usable)."""
        name = purpose.value.decode()
        version = max(self.versions(purpose), default=0) + 1
        if version > MAX_VERSION:
            raise ConfigError("a key version is one byte: no version left", purpose=name)
        row = _new_master(s, self._keys, name, version, now)
        s.flush()
        self._sealed[(name, version)] = row.sealed
        return version

    def retire(self, s: Session, purpose: Purpose, version: int, *, now: dt.datetime) -> None:
        """Retire one version: records under it are flagged, no load or script uses it. The newest live
        version cannot be retired (rotate first)."""
        name = purpose.value.decode()
        row = s.get(IssuerKey, (name, version))
        if row is None:
            raise PurseKeyMissing("no issuer key of this purpose and version", purpose=name, version=version)
        if self.current_version(purpose) == version:
            raise ConfigError("the current version is retired only after a rotation", purpose=name)
        row.status, row.retired_at = "retired", now
        s.flush()
        self._retired.add((name, version))

    def ca_private_key(self) -> ec.EllipticCurvePrivateKey:
        """The issuer CA key (certificates of cards and SAMs: contracts.purse_session makes them)."""
        scalar = self._keys.open_secret(self._sealed[(CA, 1)], _label(CA, 1))
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())

    def ca_public_key(self) -> bytes:
        """The CA public key, compressed SEC1 (33 bytes): what cards and SAMs are personalised with."""
        return self.ca_private_key().public_key().public_bytes(serialization.Encoding.X962,
                                                                serialization.PublicFormat.CompressedPoint)

    def __repr__(self) -> str:
        return f"IssuerKeys(<{len(self._sealed)} sealed keys>)"


def _new_master(s: Session, keys: RegistryKeys, purpose: str, version: int, now: dt.datetime) -> IssuerKey:
    row = IssuerKey(purpose=purpose, version=version, status="active", created_at=now,
                    sealed=keys.seal_secret(secrets.token_bytes(MASTER_LEN), _label(purpose, version)))
    s.add(row)
    return row
