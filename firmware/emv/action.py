"""Terminal action analysis (Book 3 10.7), card action analysis of the CID (Book 3 10.8), and the
decision after the online authorisation or when going online failed (Book 3 10.7, 10.9).
"""

from __future__ import annotations

from enum import IntEnum

from contracts.errors import CardError
from firmware.emv.config import AidConfig
from firmware.emv.data import DataStore

__all__ = ["Cryptogram", "after_online", "card_action", "default_action", "terminal_action"]


class Cryptogram(IntEnum):
    """GENERATE AC reference control bits 8-7 and CID bits 8-7 (Book 3 6.5.5, table 14)."""

    AAC = 0x00
    TC = 0x40
    ARQC = 0x80


def _iacs(store: DataStore) -> tuple[bytes, bytes, bytes]:
    """IAC denial/online/default; absent ones default to zeros / all ones / all ones (Book 3 10.7)."""
    def get(tag: int, fill: int) -> bytes:
        value = store.get(tag)
        return value if value is not None and len(value) == 5 else bytes([fill] * 5)
    return get(0x9F0E, 0x00), get(0x9F0F, 0xFF), get(0x9F0D, 0xFF)


def _hits(tvr: bytes, tac: bytes, iac: bytes) -> bool:
    return any(t & (a | b) for t, a, b in zip(tvr, tac, iac, strict=True))


def terminal_action(store: DataStore, aid: AidConfig, *, can_go_online: bool) -> Cryptogram:
    """Which cryptogram to ask for in the first GENERATE AC."""
    tvr = bytes(store.tvr)
    iac_denial, iac_online, iac_default = _iacs(store)
    if _hits(tvr, aid.tac_denial, iac_denial):
        return Cryptogram.AAC
    if can_go_online:
        return Cryptogram.ARQC if _hits(tvr, aid.tac_online, iac_online) else Cryptogram.TC
    return Cryptogram.AAC if _hits(tvr, aid.tac_default, iac_default) else Cryptogram.TC


def default_action(store: DataStore, aid: AidConfig) -> Cryptogram:
    """Unable to go online after an ARQC: TAC/IAC default decide between TC and AAC (Book 3 10.7)."""
    _, _, iac_default = _iacs(store)
    return Cryptogram.AAC if _hits(bytes(store.tvr), aid.tac_default, iac_default) else Cryptogram.TC


_ALLOWED = {   # Book 3 9.3, table 13: what the card may answer to each request
    Cryptogram.AAC: frozenset({Cryptogram.AAC}),
    Cryptogram.ARQC: frozenset({Cryptogram.AAC, Cryptogram.ARQC}),
    Cryptogram.TC: frozenset({Cryptogram.AAC, Cryptogram.ARQC, Cryptogram.TC}),
}


def card_action(cid: int, requested: Cryptogram, *, second: bool = False) -> Cryptogram:
    """The card's answer to GENERATE AC (Book 3 10.8); a second one can only be TC or AAC."""
    kind = cid & 0xC0
    if kind == 0xC0:
        raise CardError("card returned a reserved cryptogram type", cid=f"{cid:02X}")
    answered = Cryptogram(kind)
    if answered not in _ALLOWED[requested] or (second and answered == Cryptogram.ARQC):
        raise CardError("card returned a cryptogram type it may not", requested=requested.name,
                        returned=answered.name)
    return answered


def after_online(arc: bytes, approved_codes: frozenset[bytes]) -> Cryptogram:
    """Second GENERATE AC after the host answered: TC when approved, else AAC (Book 3 10.9)."""
    return Cryptogram.TC if arc in approved_codes else Cryptogram.AAC
