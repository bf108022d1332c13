"""Pump replies (DC transactions) read into status fields, scaled by the pump's decimals; all or none.

Layouts are the Wayne DART application protocol's (Protocol Specification Dart Pump Interface rev. 2.11,
section 3 "Transactions"). A data frame is one message: read() reads every
transaction of it before anything is applied, and one malformed field rejects the whole frame, so a DC2
whose amount is not BCD never leaves a new volume beside a stale amount (issue 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.pump import PumpState

from . import dart, layouts

__all__ = ["STATES", "Decimals", "Reply", "read", "scale"]

# DC1 status codes (Pump Interface p. 20). 8 SUSPENDED is optional: the filling stays open, only paused,
# so it reads as FILLING (contracts.pump has no SUSPENDED state); Reply.suspended says it is paused.
STATES = {
    dart.ST_NOT_PROGRAMMED: PumpState.NOT_PROGRAMMED, dart.ST_RESET: PumpState.RESET,
    dart.ST_AUTHORIZED: PumpState.AUTHORIZED, dart.ST_FILLING: PumpState.FILLING,
    dart.ST_FILLING_COMPLETED: PumpState.FILLING_COMPLETED, dart.ST_MAX_REACHED: PumpState.MAX_REACHED,
    dart.ST_SWITCHED_OFF: PumpState.SWITCHED_OFF, dart.ST_SUSPENDED: PumpState.FILLING,
}


@dataclass(frozen=True)
class Decimals:
    """Decimal places of the pump's figures (DC7 DPVOL, DPAMO, DPUNP). Ours are fixed: volume in cl (2),
    amount in cents (2), unit price in thousandths (3); scale() converts between the two."""

    volume: int = 2
    amount: int = 2
    price: int = 3


OURS = Decimals()


def scale(value: int, have: int, want: int) -> int:
    """value with `have` decimals -> `want` decimals; extra places are cut (figures only grow)."""
    if have <= want:
        return int(value * 10 ** (want - have))
    return int(value // 10 ** (have - want))


@dataclass
class Reply:
    """What one data frame from the pump says; None where it says nothing."""

    fields: dict[str, Any] = field(default_factory=dict)            # PumpStatus fields
    totals: list[tuple[int, int]] = field(default_factory=list)      # (COUN, total value in our units)
    decimals: Decimals | None = None                                 # from DC7
    suspended: bool | None = None
    unknown_status: int | None = None


def read(transactions: list[tuple[int, bytes]], dec: Decimals) -> Reply:
    """Read every transaction of one frame; raises dart.DartError on the first malformed one."""
    out = Reply()
    for trans, data in transactions:
        _read(out, trans, data, dec)
    return out


def _length(trans: int, data: bytes, *ok: int) -> None:
    if len(data) not in ok:
        raise dart.FrameError("bad transaction length", trans=trans, length=len(data))


def _read(out: Reply, trans: int, data: bytes, dec: Decimals) -> None:
    if trans == dart.DC1:
        _length(trans, data, 1)
        state = STATES.get(data[0])
        if state is None:
            out.unknown_status = data[0]
            return
        out.fields["state"] = state
        out.suspended = data[0] == dart.ST_SUSPENDED
    elif trans == dart.DC2:                      # VOL 4 BCD, AMO 4 BCD (p. 20)
        _length(trans, data, 8)
        out.fields["volume_cl"] = scale(dart.bcd_decode(data[:4]), dec.volume, OURS.volume)
        out.fields["amount_cents"] = scale(dart.bcd_decode(data[4:]), dec.amount, OURS.amount)
    elif trans == dart.DC3:                      # PRI 3 BCD, NOZIO (p. 21)
        _length(trans, data, 4)
        out.fields["price_milli"] = scale(dart.bcd_decode(data[:3]), dec.price, OURS.price)
        out.fields["nozzle"] = data[3] & 0x0F
        out.fields["nozzle_out"] = bool(data[3] & dart.NOZZLE_OUT)
    elif trans == dart.DC7:
        out.decimals = Decimals(*layouts.dc7_decimals(data))
    elif trans == dart.DC101:                    # COUN, TOTVAL 5 BCD, TOTM1 5 BCD, TOTM2 5 BCD (p. 25)
        coun, total = layouts.dc101_total(data)
        place = OURS.volume if layouts.coun_is_volume(coun) else OURS.amount
        have = dec.volume if layouts.coun_is_volume(coun) else dec.amount
        out.totals.append((coun, scale(total, have, place)))
