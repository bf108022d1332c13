"""What the pump is released to after the registry approved: its per-nozzle allowances, or (an older
registry that sends none) the most litres on the nozzles it names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.messages import Allowance, AuthAnswer
from contracts.reasons import DeclineReason
from firmware.programs.base import Decline, Grant, SaleSteps
from firmware.sale.record import Preset

__all__ = ["registry_grant"]


def _grant(chosen: list[Allowance], reference: str, data: Mapping[str, Any], *, asked: bool = False) -> Grant:
    """The chosen nozzles, preset to the smallest of their allowances: none of them may pass its own.
    asked: the driver chose the product here (the sale does not ask again)."""
    return Grant(Preset.volume(min(a.volume_cl for a in chosen)), nozzles=tuple(a.nozzle for a in chosen),
                 reference=reference, data=data, product_asked=asked)


def registry_grant(answer: AuthAnswer, steps: SaleSteps, pump: int,
                   data: Mapping[str, Any]) -> Grant | Decline:
    """An approval as a Grant. The same allowance on every allowed nozzle: all of them, preset to it.
    Allowances that differ: the driver picks the product first (steps.port.choose_product), and only its
    nozzles are offered, preset to its allowance; "any" (None) offers every one preset to the smallest.
    Raises SaleCancelled when the driver cancels the choice."""
    if answer.auth_id is None:
        raise ValueError("an approval names its authorization")
    if not answer.allowances:
        return Grant(Preset.volume(answer.allowed_cl), nozzles=answer.nozzles, reference=answer.auth_id,
                     data=data)
    usable = [a for a in answer.allowances if a.volume_cl > 0 and a.nozzle in answer.nozzles]
    if not usable:
        return Decline(DeclineReason.LIMIT_EXHAUSTED)
    groups: dict[str, list[Allowance]] = {}
    for a in sorted(usable, key=lambda a: a.nozzle):
        groups.setdefault(a.product, []).append(a)
    if len({a.volume_cl for a in usable}) == 1 or len(groups) == 1:
        return _grant(usable, answer.auth_id, data)
    station = steps.station()
    options = []
    for allowances in groups.values():
        name = station.product(pump, allowances[0].nozzle)[1]
        prices = [station.price(pump, a.nozzle) or 0 for a in allowances]
        options.append((name, max(prices)))
    pick = steps.port.choose_product(options, station.currency)
    chosen = usable if pick is None else list(groups.values())[pick]
    return _grant(chosen, answer.auth_id, data, asked=True)
