"""The issuer's side of wallets on the chip (issue 18, docs/chip-wallet-registry.md): issuer keys, purses and
SAMs, purchase records in, loads, issuer scripts and records carried on flash-drive bundles."""

from __future__ import annotations

__all__: list[str] = []
