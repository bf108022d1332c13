"""The driver's own limits inside a grant: which product (when the grant allows nozzles of several) and an
amount or litres to fill up to, below the granted maximum. Asked after the grant is journaled and before
the pump is released; what the driver picks is journaled before the release, so a restart knows it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from firmware.programs.base import Cardholder, Grant
from firmware.sale.record import Preset
from firmware.station import Station

__all__ = ["Product", "driver_limits", "products_of"]

log = logging.getLogger(__name__)


Product = tuple[str, tuple[int, ...], int]      # name, its nozzles, unit price (the highest of them)


def products_of(station: Station, pump: int, nozzles: Sequence[int]) -> list[Product]:
    """(product name, its nozzles, unit price) per priced product among the nozzles, in nozzle order.

    >>> from firmware.station import NozzlePrice
    >>> s = Station("S", prices=(NozzlePrice(1, 1, "B7", "Diesel", 1659),
    ...     NozzlePrice(1, 2, "E10", "E10", 1789), NozzlePrice(1, 3, "B7", "Diesel", 1659)))
    >>> products_of(s, 1, (1, 2, 3, 4))
    [('Diesel', (1, 3), 1659), ('E10', (2,), 1789)]
    """
    out: dict[str, Product] = {}
    for n in nozzles:
        product, name = station.product(pump, n)
        price = station.price(pump, n)
        if product is None or price is None:
            continue
        name_, known, top = out.get(product, (name, (), price))
        out[product] = (name_, (*known, n), max(top, price))
    return list(out.values())


def driver_limits(port: Cardholder, station: Station, pump: int,
                  grant: Grant) -> tuple[Preset, tuple[int, ...]]:
    """The preset and nozzles the pump is released to: the grant's, narrowed by the driver's choice.
    Raises SaleCancelled on CANCEL or a prompt's timeout."""
    nozzles = grant.nozzles
    products = products_of(station, pump, nozzles)
    if len(products) > 1 and not grant.product_asked:
        pick = port.choose_product([(name, price) for name, _, price in products], station.currency)
        if pick is not None:
            nozzles = products[pick][1]
    preset = port.enter_preset(grant.preset, station.currency)
    inside = preset.kind == grant.preset.kind and 0 < preset.value <= grant.preset.value
    if preset != grant.preset and not inside:       # never more than granted, whatever a port answers
        log.warning("preset outside the grant ignored", extra={"kind": preset.kind})
        preset = grant.preset
    return preset, nozzles
