"""Commands to a DART pump built from our figures, in the pump's decimal places (pure; MessageError on
figures that cannot go out). Layouts: Protocol Specification Dart Pump Interface rev. 2.11, CD2 allowed
nozzles, CD3 preset volume and CD4 preset amount (4 BCD each), CD5 price update (3 BCD per nozzle 1..n),
CD101 total counters (one COUN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contracts.errors import MessageError

from . import dart, layouts
from .replies import OURS, Decimals, scale

__all__ = ["authorize", "check", "counters", "prices", "request"]

Transactions = list[tuple[int, bytes]]


def request(*commands: int) -> Transactions:
    """CD1 commands, one transaction each, e.g. request(dart.CMD_STOP, dart.CMD_STATUS)."""
    return [(dart.CD1, bytes((c,))) for c in commands]


def authorize(pump: int, nozzles: Sequence[int], volume_cl: int | None, amount_cents: int | None,
              dec: Decimals | None) -> Transactions:
    """CD2 allowed nozzles, the preset if any (rounded down to the pump's decimals: never more than asked
    for), then CD1 AUTHORIZE; dec is needed only with a preset."""
    if volume_cl is not None and amount_cents is not None:
        raise MessageError("give a volume or an amount preset, not both", pump=pump)
    if not nozzles or any(n < 1 or n > 15 for n in nozzles):
        raise MessageError("nozzles must be 1..15", pump=pump, nozzles=list(nozzles))
    trans: Transactions = [(dart.CD2, bytes(nozzles))]
    try:
        if volume_cl is not None and dec is not None:
            trans.append((dart.CD3, dart.bcd_encode(scale(volume_cl, OURS.volume, dec.volume), 4)))
        if amount_cents is not None and dec is not None:
            trans.append((dart.CD4, dart.bcd_encode(scale(amount_cents, OURS.amount, dec.amount), 4)))
    except dart.BcdError as exc:
        raise MessageError("preset out of range", pump=pump) from exc
    return [*trans, *request(dart.CMD_AUTHORIZE)]


def check_prices(pump: int, given: Mapping[int, int]) -> None:
    if not given or sorted(given) != list(range(1, len(given) + 1)):
        raise MessageError("prices must cover nozzles 1..n", pump=pump, nozzles=sorted(given))


def prices(pump: int, given: Mapping[int, int], dec: Decimals) -> bytes:
    """CD5 data; a price with more decimals than the pump's DPUNP is refused, never rounded."""
    check_prices(pump, given)
    wire = [scale(given[n], OURS.price, dec.price) for n in sorted(given)]
    if any(scale(w, dec.price, OURS.price) != given[n] for w, n in zip(wire, sorted(given), strict=True)):
        raise MessageError("price has more decimals than the pump shows", pump=pump, price_decimals=dec.price)
    try:
        return b"".join(dart.bcd_encode(w, 3) for w in wire)
    except dart.BcdError as exc:
        raise MessageError("price out of range", pump=pump) from exc


def counters(pump: int, nozzle: int) -> tuple[int, int]:
    """COUN of the nozzle's volume total and of its amount total; DART counts nozzles 1..8 only."""
    try:
        return layouts.volume_coun(nozzle), layouts.amount_coun(nozzle)
    except dart.FrameError as exc:
        raise MessageError("nozzle must be 1..8 for total counters", pump=pump, nozzle=nozzle) from exc


def check(trans: int, data: bytes) -> None:
    """Raise dart.DartError for a command transaction whose fields a pump cannot read."""
    if trans in (dart.CD3, dart.CD4):
        if len(data) != 4:
            raise dart.FrameError("preset length", trans=trans)
        dart.bcd_decode(data)
    elif trans == dart.CD5:
        if not data or len(data) % 3:
            raise dart.FrameError("CD5 length", length=len(data))
        dart.bcd_decode(data)
    elif trans == dart.CD101:
        if len(data) != 1:
            raise dart.FrameError("CD101 length", length=len(data))
        layouts.coun_is_volume(data[0])
    elif trans == dart.CD1 and len(data) != 1:
        raise dart.FrameError("CD1 length", length=len(data))
