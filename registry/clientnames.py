"""The registry's names on the broker that no device can guess: its MQTT client ids and its shared
subscription group.

Mosquitto 2.0.11 ties neither a client id nor a shared-subscription group to the certificate: a client with
any valid device certificate may connect under another client's id (the broker then disconnects the first
one) or join a share group (the broker then hands it its turn of the group's messages and, its ACL refusing
the read, drops them). So the registry's ids and group carry a 128-bit secret kept beside the authority
(registry-id, 0600), the same for every registry process. On a plain broker (tests) there is none.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from registry.keys import _read_private, _write_private

__all__ = ["SECRET_FILE", "ClientNames", "client_names"]

SECRET_FILE = "registry-id"


@dataclass(frozen=True)
class ClientNames:
    secret: str                # "" on a plain broker

    def client_id(self, role: str) -> str:
        """forecourt-registry[-role][-secret]: e.g. the authorization client's, a worker's."""
        parts = ["forecourt-registry", role, self.secret]
        return "-".join(p for p in parts if p)

    @property
    def group(self) -> str:
        """The shared-subscription group of every registry process."""
        return f"registry-{self.secret}" if self.secret else "registry"


def client_names(authority_dir: Path | None) -> ClientNames:
    """The names of the registry of this authority directory (its secret made on first use)."""
    if authority_dir is None:
        return ClientNames("")
    path = authority_dir / SECRET_FILE
    try:
        _write_private(path, secrets.token_hex(16) + "\n")
    except FileExistsError:
        pass                                    # made by another registry process, or before
    return ClientNames(_read_private(path).strip())
