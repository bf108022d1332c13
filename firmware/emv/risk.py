"""Terminal risk management (EMV 4.4 Book 3 10.6): floor limit, random selection, velocity checking.

The split-sales log (10.6.1, optional) is not kept: an AFD's floor limit is 0, so every sale goes online.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from firmware.emv.apdu import Transmitter, exchange, get_data
from firmware.emv.config import AidConfig
from firmware.emv.data import DataStore, TsiBit, TvrBit

__all__ = ["terminal_risk_management"]


def _random_percent() -> int:
    return secrets.randbelow(99) + 1      # 1..99, Book 3 10.6.2


def _random_selection(store: DataStore, amount: int, aid: AidConfig, rng: Callable[[], int]) -> None:
    """Book 3 10.6.2 (only below the floor limit); biased selection between threshold and floor limit."""
    if amount >= aid.floor_limit or aid.target_percent <= 0:
        return
    number = rng()
    if amount < aid.threshold:
        target = aid.target_percent
    else:
        span = aid.floor_limit - aid.threshold
        interpolation = (amount - aid.threshold) / span if span > 0 else 1.0
        target = int(aid.target_percent + (aid.max_target_percent - aid.target_percent) * interpolation)
    if number <= target:
        store.tvr.set(TvrBit.RANDOMLY_SELECTED_ONLINE)


def _counter(reader: Transmitter, tag: int) -> int | None:
    resp = exchange(reader, get_data(tag), "get_data")
    head = bytes([tag >> 8, tag & 0xFF, 0x02])
    if not resp.ok or len(resp.data) != 5 or resp.data[:3] != head:
        return None
    return int.from_bytes(resp.data[3:], "big")


def _velocity(reader: Transmitter, store: DataStore) -> None:
    """Book 3 10.6.3: needs LCOL 9F14 and UCOL 9F23 from the card, ATC and last online ATC by GET DATA."""
    lcol, ucol = store.get(0x9F14), store.get(0x9F23)
    if lcol is None or ucol is None or len(lcol) != 1 or len(ucol) != 1:
        return
    atc, last_online = _counter(reader, 0x9F36), _counter(reader, 0x9F13)
    if last_online == 0:                 # "new card" even when the ATC itself cannot be read (10.6.3)
        store.tvr.set(TvrBit.NEW_CARD)
    if atc is None or last_online is None or atc <= last_online:
        store.tvr.set(TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED)
        store.tvr.set(TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED)
        return
    store.set(0x9F36, atc.to_bytes(2, "big"))
    store.set(0x9F13, last_online.to_bytes(2, "big"))
    if atc - last_online > lcol[0]:
        store.tvr.set(TvrBit.LOWER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED)
    if atc - last_online > ucol[0]:
        store.tvr.set(TvrBit.UPPER_CONSECUTIVE_OFFLINE_LIMIT_EXCEEDED)


def terminal_risk_management(reader: Transmitter, store: DataStore, amount: int, aid: AidConfig, *,
                             regardless_of_aip: bool = True, velocity: bool = True,
                             rng: Callable[[], int] = _random_percent) -> bool:
    """Run TRM when the AIP asks for it (byte 1 bit 4) or the terminal always does; True if performed."""
    aip = store.get(0x82) or b"\x00\x00"
    if not (aip[0] & 0x08 or regardless_of_aip):
        return False
    if amount >= aid.floor_limit:        # Book 3 10.6.1: "exceeds or equals"
        store.tvr.set(TvrBit.FLOOR_LIMIT_EXCEEDED)
    _random_selection(store, amount, aid, rng)
    if velocity:
        _velocity(reader, store)
    store.tsi.set(TsiBit.TERMINAL_RISK_MANAGEMENT_PERFORMED)
    return True
