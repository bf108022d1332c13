"""What the network owes each station for the points it granted (issue 15).

A station's point value is set per product group from a date on ("*" covers groups without their own).
`settle` counts the points of earn awards (point_awards of "earn" movements) dated in the period at the
station, less reversals of such earns booked in the period, each at the value in force on its award's
date, per product group; amounts are summed in thousandths of a cent and rounded down to the cent once per
line. The lines are written once (loyalty_settlements) and asked again are returned as written, even when
values changed since. Dates are UTC days (stations have no time zone of their own). Nothing commits here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from sqlalchemy import literal, select, update
from sqlalchemy.orm import Session, aliased

from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.fleet.admin import audit, get
from registry.fleet.statements import money
from registry.loyalty.rewards import RewardError
from registry.models import LoyaltySettlement, Movement, PointAward, Station, StationPointValue

__all__ = ["ANY", "MIXED", "NOTHING", "printout", "set_value", "settle", "settled", "value_on", "values"]

ANY = "*"                       # a value for every group without its own
NOTHING = "*"                   # the one line of a period in which the station granted nothing
MIXED = -1                      # milli_cents of a line whose awards had several values (amount is exact)
MAX_MILLI_CENTS = 10**6
_GROUP = re.compile(r"[a-z0-9_-]{1,16}|\*", re.ASCII)
Value = tuple[str, dt.date, int]        # group, valid_from, milli_cents


def set_value(s: Session, station: str, group: str, valid_from: dt.date, milli_cents: int, *, actor: str,
              now: dt.datetime) -> StationPointValue:
    """What the station is paid per point of `group` from `valid_from` on (thousandths of a cent)."""
    get(s, Station, station, "station")
    if not _GROUP.fullmatch(group):
        raise ConfigError("product group must be 1 to 16 of a-z 0-9 _ - or *", key="group")
    if isinstance(milli_cents, bool) or not isinstance(milli_cents, int) \
            or not 0 <= milli_cents <= MAX_MILLI_CENTS:
        raise ConfigError(f"point value must be 0 to {MAX_MILLI_CENTS} thousandths of a cent", key="value")
    row = s.get(StationPointValue, (station, group, valid_from))
    old = row.milli_cents if row is not None else None
    if row is None:
        row = StationPointValue(station_id=station, product_group=group, valid_from=valid_from,
                                milli_cents=milli_cents)
        s.add(row)
    row.milli_cents = milli_cents
    s.flush()
    audit(s, actor=actor, action="settlement.value", subject=f"station:{station}", now=now, group=group,
          valid_from=valid_from.isoformat(), old=old, new=milli_cents)
    return row


def values(s: Session, station: str | None = None) -> list[StationPointValue]:
    query = select(StationPointValue).order_by(StationPointValue.station_id, StationPointValue.product_group,
                                               StationPointValue.valid_from)
    if station:
        query = query.where(StationPointValue.station_id == station)
    return list(s.scalars(query))


def value_on(table: Iterable[Value], group: str, day: dt.date) -> int | None:
    """The value in force for `group` on `day`: the group's own latest from before it, else "*"'s (pure).

    >>> d = dt.date
    >>> t = [("fuel", d(2026, 1, 1), 500), ("fuel", d(2026, 6, 1), 700), ("*", d(2026, 1, 1), 100)]
    >>> asked = (("fuel", d(2026, 5, 31)), ("shop", d(2026, 7, 1)), ("x", d(2025, 1, 1)))
    >>> [value_on(t, group, day) for group, day in asked]
    [500, 100, None]
    """
    rows = list(table)
    for wanted in (group, ANY):
        found = [(start, value) for name, start, value in rows if name == wanted and start <= day]
        if found:
            return max(found)[1]
    return None


def settled(s: Session, station: str, start: dt.date, end: dt.date) -> list[LoyaltySettlement]:
    return list(s.scalars(select(LoyaltySettlement)
                          .where(LoyaltySettlement.station_id == station,
                                 LoyaltySettlement.period_start == start, LoyaltySettlement.period_end == end)
                          .order_by(LoyaltySettlement.product_group)))


def _granted(s: Session, station: str, first: dt.datetime,
             after: dt.datetime) -> list[tuple[str, dt.datetime, int]]:
    """(group, award date, points) of the station's earn awards dated in [first, after), and (negative) of
    reversals of its earn awards booked in it."""
    earned = s.execute(select(PointAward.product_group, PointAward.earned_at, PointAward.points)
                       .join(Movement, Movement.id == PointAward.movement_id)
                       .where(Movement.kind == "earn", PointAward.station_id == station,
                              PointAward.earned_at >= first, PointAward.earned_at < after)).all()
    original = aliased(Movement)
    undone = s.execute(select(PointAward.product_group, PointAward.earned_at, Movement.amount)
                       .join(original, original.id == PointAward.movement_id)
                       .join(Movement, Movement.key == literal(ledger.REVERSAL) + original.key)
                       .where(original.kind == "earn", Movement.kind == "reversal",
                              PointAward.station_id == station, Movement.at >= first,
                              Movement.at < after)).all()
    return [(group, at, int(points)) for group, at, points in [*earned, *undone]]


def settle(s: Session, station: str, start: dt.date, end: dt.date, actor: str,
           now: dt.datetime) -> list[LoyaltySettlement]:
    """The station's settlement for [start, end] (inclusive days, UTC), written once; asked again, the lines
    as written. A period must have ended and must not overlap another settled period of the station.

    Runs for one station take turns (the station's row is written first: a row lock on PostgreSQL, the
    write lock on SQLite, held to commit), so two at once write one settlement and no overlapping periods.
    """
    get(s, Station, station, "station")
    if end < start:
        raise ConfigError("the period ends before it starts", key="end")
    s.execute(update(Station).where(Station.id == station).values(name=Station.name)
              .execution_options(synchronize_session=False))
    stored = settled(s, station, start, end)
    if stored:
        return stored
    if now.date() <= end:
        raise RewardError("the period has not ended yet", station=station, end=end.isoformat())
    overlap = s.execute(select(LoyaltySettlement.period_start, LoyaltySettlement.period_end)
                        .where(LoyaltySettlement.station_id == station, LoyaltySettlement.period_start <= end,
                               LoyaltySettlement.period_end >= start).limit(1)).first()
    if overlap is not None:
        raise RewardError("the period overlaps a settled one", station=station,
                          settled=f"{overlap[0].isoformat()}..{overlap[1].isoformat()}")
    table = [(v.product_group, v.valid_from, v.milli_cents) for v in values(s, station)]
    first = dt.datetime.combine(start, dt.time())
    lines: dict[str, tuple[int, int, set[int]]] = {}        # group -> points, milli-cents, values used
    after = dt.datetime.combine(end, dt.time()) + dt.timedelta(days=1)
    for group, at, points in _granted(s, station, first, after):
        value = value_on(table, group, at.date())
        if value is None:
            raise ConfigError("no point value in force for the station's group on that day: set one",
                              station=station, group=group or "(none)", day=at.date().isoformat())
        total, amount, used = lines.get(group, (0, 0, set()))
        lines[group] = (total + points, amount + points * value, used | {value})
    if not lines:
        lines[NOTHING] = (0, 0, {0})
    rows = [LoyaltySettlement(station_id=station, period_start=start, period_end=end, product_group=group,
                              points=total, milli_cents=next(iter(used)) if len(used) == 1 else MIXED,
                              amount_cents=amount // 1000, created_at=now, actor=actor[:64])
            for group, (total, amount, used) in sorted(lines.items())]
    s.add_all(rows)
    s.flush()
    audit(s, actor=actor, action="settlement.run", subject=f"station:{station}", now=now,
          start=start.isoformat(), end=end.isoformat(), points=sum(r.points for r in rows),
          cents=sum(r.amount_cents for r in rows))
    return rows


def _value(milli_cents: int) -> str:
    return "several" if milli_cents == MIXED else f"{milli_cents // 1000}.{milli_cents % 1000:03d}"


def printout(rows: Sequence[LoyaltySettlement]) -> str:
    """A settlement as text, the same every time it is printed (it reads only the stored lines)."""
    if not rows:
        return "no settlement\n"
    head = rows[0]
    out = [(f"Loyalty settlement  station {head.station_id}  {head.period_start.isoformat()} .. "
           f"{head.period_end.isoformat()}"),
           f"{'GROUP':<16} {'POINTS':>12} {'CENTS/POINT':>12} {'AMOUNT':>14}"]
    for r in rows:
        nothing = r.product_group == NOTHING and r.points == 0
        group = "(nothing granted)" if nothing else r.product_group or "-"
        out.append(f"{group:<16} {r.points:>12} {_value(r.milli_cents):>12} {money(r.amount_cents):>14}")
    out.append(f"{'TOTAL':<16} {sum(r.points for r in rows):>12} {'':>12} "
               f"{money(sum(r.amount_cents for r in rows)):>14}")
    out.append(f"settled {head.created_at.isoformat(sep=' ', timespec='minutes')} by {head.actor}")
    return "\n".join(out) + "\n"
