"""What a sale dispensed, from the pump's last filling and its electronic totals: a pure function.

The pump's filling figures are the sale's, unless the totals say otherwise: nothing moved (the filling
shown belongs to an earlier sale), or the pump lost its display (reset, power cycle) and only its totals
still know what flowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from contracts.pump import PumpStatus
from firmware.programs.base import Figures

__all__ = ["Totals", "settle"]

Totals = Mapping[int, tuple[int, int]]     # nozzle -> (volume_cl, amount_cents); they only grow


def settle(status: PumpStatus, before: Totals | None, after: Totals | None, *,
           price: Callable[[int], int | None], product: Callable[[int], str | None]) -> Figures:
    """The figures of one sale. before is None when the pump was never released for it.

    >>> from contracts.pump import PumpState
    >>> done = PumpStatus(1, PumpState.FILLING_COMPLETED, nozzle=1, volume_cl=2000, amount_cents=3318,
    ...                   price_milli=1659)
    >>> settle(done, {1: (100, 166)}, {1: (2100, 3484)}, price=lambda n: 1659, product=lambda n: "B7")
    Figures(nozzle=1, product='B7', volume_cl=2000, amount_cents=3318, price_milli=1659, flags=())
    >>> settle(done, {1: (100, 166)}, {1: (100, 166)}, price=lambda n: 1659, product=lambda n: "B7").volume_cl
    0
    """
    nozzle, volume, amount = status.nozzle, status.volume_cl, status.amount_cents
    price_milli = status.price_milli
    flags: list[str] = []
    if after is None or before is None:
        if not status.state.finished:
            volume = amount = 0           # the pump was never released for this sale
    else:
        moved = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in after if n in before}
        moved_cl = sum(v for v, _ in moved.values())
        if moved_cl == 0:
            volume = amount = 0           # nothing flowed for this sale
        elif not status.state.finished:
            # the pump lost its filling display (reset, restart): its totals still say what flowed
            nozzle = max(moved, key=lambda n: moved[n][0])
            volume, amount = moved_cl, sum(a for _, a in moved.values())
            price_milli = price(nozzle) or price_milli
            flags.append("settled_from_totals")
        elif moved_cl != volume:
            flags.append("totals_mismatch")
    return Figures(nozzle=nozzle, product=product(nozzle), volume_cl=volume, amount_cents=amount,
                   price_milli=price_milli, flags=tuple(flags))
