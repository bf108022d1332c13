"""An attendant's sign-in ticket: what an accepted online sign-in answers (contracts.service_messages TICKET),
and what each later request of that attendant at that terminal carries.

A ticket is "<expiry>.<mac>": the expiry in unix seconds (10 digits), 12 hours after the sign-in, and the
first 32 hex digits (128 bits) of HMAC-SHA256 (RFC 2104) over "attendant|terminal|expiry" under a key
derived from the card-token key by HKDF-SHA256 (RFC 5869) with its own label. Neither id can hold "|"
(the wire's id pattern), so the three fields never run into each other. Nothing is stored: the registry
recomputes the MAC. A ticket cannot be withdrawn before it expires; locking or withdrawing the attendant
(checked on every request but a booked one sent again: registry.service_desk_ask) ends what it allows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from registry.keys import RegistryKeys

__all__ = ["LIFETIME", "authentic", "issue", "key", "valid"]

LIFETIME = dt.timedelta(hours=12)
MAC_HEX = 32
_LABEL = b"forecourt attendant ticket v1"
_TICKET = re.compile(r"([0-9]{10})\.([0-9a-f]{32})", re.ASCII)


def key(keys: RegistryKeys) -> bytes:
    """The ticket key: its own label under the card-token key (as registry.vouchers.code_key)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(keys.card_key)


def _unix(when: dt.datetime) -> int:
    """Whole unix seconds of a registry time (naive is UTC, as utcnow gives)."""
    return int((when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)).timestamp())


def _mac(ticket_key: bytes, attendant: str, terminal: str, expiry: int) -> str:
    text = f"{attendant}|{terminal}|{expiry:010d}".encode()
    return hmac.new(ticket_key, text, hashlib.sha256).hexdigest()[:MAC_HEX]


def issue(keys: RegistryKeys, attendant: str, terminal: str, now: dt.datetime) -> str:
    """The ticket of an attendant just signed in at `terminal`, valid LIFETIME from `now`."""
    expiry = _unix(now + LIFETIME)
    return f"{expiry:010d}.{_mac(key(keys), attendant, terminal, expiry)}"


def authentic(keys: RegistryKeys, ticket: str, attendant: str, terminal: str) -> int | None:
    """The expiry of `ticket` (unix seconds) when the registry issued it to this attendant at this
    terminal, expired or not; None otherwise. The MAC is compared in constant time."""
    found = _TICKET.fullmatch(ticket) if isinstance(ticket, str) else None
    if found is None:
        return None
    expiry, mac = int(found.group(1)), found.group(2)
    return expiry if hmac.compare_digest(mac, _mac(key(keys), attendant, terminal, expiry)) else None


def valid(keys: RegistryKeys, ticket: str, attendant: str, terminal: str, now: dt.datetime) -> bool:
    """Whether `ticket` was issued to this attendant at this terminal and has not expired (now is before
    its expiry)."""
    expiry = authentic(keys, ticket, attendant, terminal)
    return expiry is not None and _unix(now) < expiry
