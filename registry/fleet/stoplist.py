"""What a terminal's signed configuration says of fleet cards: its own stop-list (each refused card's entry
under the terminal's stop key, contracts.panseal) and the offline limits of each card class."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from contracts.panseal import derive_stop_key, stop_entry
from registry.fleet.cards import STOP_LIST, stop_list_numbers
from registry.keys import RegistryKeys
from registry.models import Card, Device, OfflineLimit

__all__ = ["MOST", "offline_limits", "signature", "stop_list_for"]

log = logging.getLogger(__name__)

MOST = 500          # entries a configuration carries (contracts.signing.CONFIG_BODY)


def stop_list_for(s: Session, keys: RegistryKeys, device: Device, now: dt.datetime) -> list[str]:
    """The device's stop-list entries, sorted. More cards than a configuration carries: the most recently
    stopped first, and an alarm (the rest are still refused online)."""
    try:
        stop_key = derive_stop_key(keys.device_key(device.pin_key_hex))
    except ConfigError:
        log.error("device PIN key unusable: no stop-list",
                  extra={"alarm": "device_key", "terminal": device.id})
        return []
    numbers = stop_list_numbers(s, keys, now)
    if len(numbers) > MOST:
        log.error("stop-list longer than a configuration carries",
                  extra={"alarm": "stop_list_full", "cards": len(numbers), "carried": MOST})
        numbers = numbers[-MOST:]          # ordered by card id: the newest cards' entries
    return sorted(stop_entry(stop_key, number) for number in numbers)


def offline_limits(s: Session) -> dict[str, dict[str, int]]:
    return {row.name: {"amount_cents": row.amount_cents, "volume_cl": row.volume_cl}
            for row in s.scalars(select(OfflineLimit).order_by(OfflineLimit.name))}


def signature(s: Session) -> tuple[Any, ...]:
    """Changes whenever a card joins or leaves the stop-list or an offline limit changes: the registry
    publishes configurations again when it does, not only on its six-hour round."""
    cards = s.execute(select(func.count(), func.max(Card.status_changed_at), func.max(Card.id))
                      .where(Card.status.in_(STOP_LIST))).one()
    limits = tuple((row.name, row.amount_cents, row.volume_cl)
                   for row in s.scalars(select(OfflineLimit).order_by(OfflineLimit.name)))
    return (*cards, limits)
