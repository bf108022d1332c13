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
from registry.fleet.admin import audit, need_reason
from registry.fleet.cards import STOP_LIST, stop_list_numbers
from registry.keys import RegistryKeys
from registry.models import Card, Device, OfflineLimit

__all__ = ["CLASSES", "MOST", "clear_offline_limit", "offline_limits", "set_offline_limit", "signature",
           "stop_list_for"]

log = logging.getLogger(__name__)

MOST = 500          # entries a configuration carries (contracts.signing.CONFIG_BODY)
# the card classes a terminal looks up an offline limit for (firmware.programs.fleet.offline)
CLASSES = ("fleet", "fleet_stripe", "fleet_tag")
MOST_CENTS, MOST_CL = 10**8, 10**6     # contracts.signing.CONFIG_BODY's bounds


def stop_list_for(s: Session, keys: RegistryKeys, device: Device, now: dt.datetime) -> list[str]:
    """The device's stop-list entries, sorted. More cards than a configuration carries: the most important
    ones (stolen, lost, ... the most recently changed first), and an alarm (the rest are still refused
    online)."""
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
        numbers = numbers[:MOST]           # the most important first (registry.fleet.cards.STOP_ORDER)
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


def set_offline_limit(s: Session, name: str, *, amount_cents: int, volume_cl: int, actor: str, reason: str,
                      now: dt.datetime) -> OfflineLimit:
    """Set what one offline sale of a card class may reach (both bounds apply; audited)."""
    if name not in CLASSES:
        raise ConfigError(f"card class must be one of {', '.join(CLASSES)}", key="class")
    if not (0 < amount_cents <= MOST_CENTS and 0 < volume_cl <= MOST_CL):
        raise ConfigError("an offline limit is a positive amount up to 1,000,000.00 and volume up to "
                          "10,000 L", key="limit")
    row = s.get(OfflineLimit, name) or OfflineLimit(name=name)
    before = {"amount_cents": row.amount_cents, "volume_cl": row.volume_cl}
    row.amount_cents, row.volume_cl = amount_cents, volume_cl
    s.add(row)
    audit(s, actor=actor, action="offline_limit.set", subject=f"offline_limit:{name}", now=now,
          reason=need_reason(reason), before=before, amount_cents=amount_cents, volume_cl=volume_cl)
    return row


def clear_offline_limit(s: Session, name: str, *, actor: str, reason: str, now: dt.datetime) -> bool:
    """No offline sales of the card class any more; whether there was a limit."""
    row = s.get(OfflineLimit, name)
    if row is None:
        return False
    s.delete(row)
    audit(s, actor=actor, action="offline_limit.clear", subject=f"offline_limit:{name}", now=now,
          reason=need_reason(reason))
    return True
