"""A fleet sale while the registry is away: the signed configuration's stop-list refuses a card it names,
and the offline limit of the card's medium bounds the sale. No PIN is asked: nothing here could verify it
(the registry holds the verifiers), so an offline sale rests on the stop-list and the limit alone.

The card number is journaled only sealed (contracts.panseal, bound to the sale id), with the flag that
makes the synced SALE an offline one: kind fleet, no auth_id, flags ["offline"], card_sealed and medium;
the registry finds the card by it and debits its account when the sale syncs.
"""

from __future__ import annotations

import logging
from typing import Protocol

from contracts.money import volume_of
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from firmware.programs.base import Decline, Grant, SaleSteps
from firmware.programs.fleet.media import FleetCard
from firmware.sale.record import Preset
from firmware.station import Station

__all__ = ["OFFLINE", "OfflineSeal", "offline_grant", "offline_volume", "sells_offline"]

log = logging.getLogger(__name__)

OFFLINE = "offline"     # the Grant's reference, the data key and the sale's flag
UNAVAILABLE = Decline(DeclineReason.HOST_UNAVAILABLE, Screen.HOST_UNAVAILABLE)


class OfflineSeal(Protocol):
    """The terminal's keys for offline fleet sales, and its events (firmware.hostlink.HostLink)."""
    def stop_entry(self, number: str) -> str: ...
    def seal_for_sale(self, number: str, sale_id: str) -> str: ...
    def event(self, severity: str, code: str, detail: str) -> None: ...


def offline_volume(limit: tuple[int, int], station: Station, pump: int) -> tuple[int, tuple[int, ...]]:
    """(preset volume, nozzles) of an offline sale on a pump: the limit's volume, or less where its money
    buys less at a nozzle's price (the smallest over the pump's priced nozzles, so no nozzle passes it)."""
    cents, volume = limit
    prices = station.price_table(pump)
    for price in prices.values():
        volume = min(volume, volume_of(cents, price))
    return volume, tuple(sorted(prices))


def sells_offline(station: Station) -> bool:
    """Whether the configuration lets any fleet card sell while the registry is away."""
    return any(lim is not None and min(lim) > 0
               for lim in map(station.offline_limit, ("fleet", "fleet_stripe", "fleet_tag")))


def offline_grant(card: FleetCard, steps: SaleSteps, keys: OfflineSeal) -> Grant | Decline:
    """Grant an offline sale within the medium's offline limit, or decline: no limit configured (host
    unavailable, as before offline limits), or the card on the stop-list (blocked)."""
    station = steps.station()
    limit = station.offline_limit(card.offline_class)
    if limit is None or min(limit) <= 0:
        return UNAVAILABLE
    if station.blocked(token=keys.stop_entry(card.number)):
        log.warning("card on the stop-list refused offline", extra={"card": card.masked})
        # the registry learns it once the terminal is back (device events are queued meanwhile)
        keys.event("warning", "stop_list_refused", f"card={card.masked}")
        return Decline(DeclineReason.CARD_BLOCKED)
    pump = steps.choose_pump()
    volume, nozzles = offline_volume(limit, station, pump)
    if volume <= 0 or not nozzles:
        return UNAVAILABLE
    sale_id = steps.begin(pump, card.number)
    data = {OFFLINE: True, "card_sealed": keys.seal_for_sale(card.number, sale_id), "medium": card.medium}
    steps.authorizing(data)      # journaled before the pump is released: a restart finds the sealed card
    return Grant(Preset.volume(volume), nozzles=nozzles, reference=OFFLINE, data=data)
