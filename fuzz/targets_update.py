"""Fuzz target for the software update bundle (contracts.bundle): what the registry serves is untrusted
until its signature holds. Beyond typed errors only, the property: a bundle that still opens after a
change holds exactly the release it was made with (a change the signature does not cover, such as tar
padding, may not change what is installed)."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.bundle import Bundle, Health, build_bundle, open_bundle
from contracts.errors import MessageError
from contracts.signing import key_id
from fuzz.harness import Target, Violation

__all__ = ["TARGETS"]

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_TRUSTED = {key_id(_KEY.public_key()): _KEY.public_key()}
_FILES = {"health.py": b"raise SystemExit(0)\n", "lib/app.txt": b"forecourt"}
_HEALTH = Health(("python", "health.py"), 30)


@functools.cache
def _seed() -> bytes:
    return build_bundle("1.1.0", _FILES, health=_HEALTH, private_key=_KEY)


def update_bundle(data: bytes) -> None:
    if open_bundle(data, _TRUSTED) != Bundle("1.1.0", _FILES, _HEALTH, key_id(_KEY.public_key())):
        raise Violation("a bundle that opens holds another release than it was signed with")


TARGETS = [Target("update_bundle", update_bundle, (MessageError,), lambda: [_seed()], max_len=16384)]
