"""Whether a sale can be true, judged against what the registry knows: pure functions, no I/O.

A sale that fails a check is still stored (the fuel may well have flowed), but held: flagged for an
operator and never counted in a wallet's usage or a report's totals. The figures below are this
project's choices where the issue was silent; each says why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from contracts.messages import parse_timestamp
from registry.models import Device, Nozzle

__all__ = ["CLOCK_AHEAD", "MAX_AGE", "MAX_SALE_CL", "amount_matches", "overrun_cl", "sale_problems"]

# One filling of a truck with two tanks and a trailer stays under 1,000 L; a fleet sale is bounded
# tighter by its authorization (registry.service.MAX_FILL_CL).
MAX_SALE_CL = 1000_00
# A terminal's clock may run ahead of the registry's by a little (NTP, no RTC on a Pi after a cold boot).
CLOCK_AHEAD = dt.timedelta(minutes=10)
# Store-and-forward: a terminal cut off from the broker keeps sales; two months is longer than any
# outage an operator would not have noticed, and short enough that a wrong year is caught.
MAX_AGE = dt.timedelta(days=62)


def overrun_cl(allowed_cl: int) -> int:
    """How far past its preset a pump may run and the sale still be booked (flagged preset_overrun): a pump
    slows before its preset but a valve closes late; 1 L or 2 % of the preset, whichever is more. Past
    that, the sale is held (over_authorized).

    >>> overrun_cl(1000), overrun_cl(15000)
    (100, 300)
    """
    return max(100, allowed_cl // 50)


def amount_matches(volume_cl: int, price_milli: int, amount_cents: int) -> bool:
    """Whether amount is volume times unit price, as a pump computes it.

    The simulated pump rounds half up from whole centilitres (drivers.pump.simulator); a real pump
    computes from a finer volume than the centilitres it reports, so up to half a centilitre's worth
    plus half a cent of rounding is allowed either way (1000 * cents vs cl * milli per litre).

    >>> amount_matches(2000, 1659, 3318), amount_matches(2345, 1659, 3890), amount_matches(2345, 1659, 3891)
    (True, True, True)
    >>> amount_matches(2000, 1659, 3320), amount_matches(0, 1659, 2)
    (False, False)
    """
    return abs(1000 * amount_cents - volume_cl * price_milli) <= price_milli // 2 + 500


def sale_problems(sale: dict[str, Any], device: Device | None, nozzle: Nozzle | None,
                  now: dt.datetime) -> list[str]:
    """Flags for what in a decoded SALE contradicts the registry; [] when it is plausible.

    `device` is the registry's row for sale["terminal"], `nozzle` the one for its station, pump and
    nozzle (None when unknown); `now` the registry's clock (naive UTC).
    """
    flags: list[str] = []
    if device is None:
        flags.append("unknown_terminal")
    elif device.status != "active":
        flags.append("inactive_terminal")
    elif device.station_id != sale["station"]:
        flags.append("wrong_station")
    finished = parse_timestamp(sale["finished_at"])
    if finished > now + CLOCK_AHEAD:
        flags.append("finished_in_future")
    elif finished < now - MAX_AGE:
        flags.append("finished_too_long_ago")
    volume, amount, price = sale["volume_cl"], sale["amount_cents"], sale["price_milli"]
    if volume > MAX_SALE_CL:
        flags.append("volume_over_ceiling")
    if volume == 0 and amount == 0:
        return flags                       # nothing flowed: no nozzle or price to check
    if nozzle is None:
        flags.append("unknown_nozzle")
    else:
        if sale["product"] != nozzle.product_code:
            flags.append("product_mismatch")
        if price != nozzle.price_milli:
            flags.append("price_mismatch")
    if not amount_matches(volume, price, amount):
        flags.append("amount_mismatch")
    return flags
