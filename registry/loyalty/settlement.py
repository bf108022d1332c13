"""What the network owes each station for the points it granted (issue 15).

A station's point value is set per product group from a date on ("*" covers groups without their own).
A settlement of [start, end] pays every earn award of the station not paid yet (point_awards of "earn"
movements with settlement_id NULL) dated up to the period's end: the period's own and late ones, synced
after an earlier period was settled. Each award is marked with the line that paid it, so it is paid once.
It deducts the reversals of earn awards: those of awards it pays itself (whatever their date up to the
period's end: an award reversed before it is paid nets out) and those booked since the previous settlement
of awards paid before (at the value they were paid at). One line per product group and point value in
force on the award's day; a line's amount is its points times its value in thousandths of a cent, rounded
down to the cent once. Settlements of a station go forward in time (no overlap, none before a settled one);
asked again, the lines are returned as written, even when values changed since. Days are the station's
local days (stations.timezone). Nothing commits here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.fleet.admin import audit, get
from registry.fleet.statements import money
from registry.loyalty.rewards import RewardError
from registry.models import LoyaltySettlement, Movement, PointAward, Station, StationPointValue

__all__ = ["ANY", "NOTHING", "printout", "set_value", "settle", "settled", "value_on", "values"]

ANY = "*"                       # a value for every group without its own
NOTHING = "*"                   # the one line of a period in which the station granted nothing
MAX_MILLI_CENTS = 10**6
_CHUNK = 500                    # award ids per UPDATE (SQLite's bound parameters are limited)
_GROUP = re.compile(r"[a-z0-9_-]{1,16}|\*", re.ASCII)
Value = tuple[str, dt.date, int]        # group, valid_from, milli_cents
Line = tuple[str, int]                  # group, milli_cents


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
                          .order_by(LoyaltySettlement.product_group, LoyaltySettlement.milli_cents)))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("the station's time zone is unknown", tz=tz) from exc


def _midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """Local midnight starting `day`, as the naive UTC the database keeps."""
    return dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)


def _day(at: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The local day of a naive UTC time."""
    return at.replace(tzinfo=dt.UTC).astimezone(zone).date()


def _unpaid(s: Session, station: str, after: dt.datetime) -> list[tuple[int, str, dt.datetime, int]]:
    """(movement id, group, award date, points) of the station's earn awards not paid yet, dated before
    `after`."""
    rows = s.execute(select(PointAward.movement_id, PointAward.product_group, PointAward.earned_at,
                            PointAward.points)
                     .join(Movement, Movement.id == PointAward.movement_id)
                     .where(Movement.kind == "earn", PointAward.station_id == station,
                            PointAward.settlement_id.is_(None), PointAward.earned_at < after)
                     .order_by(PointAward.movement_id)).all()
    return [(mid, group, at, int(points)) for mid, group, at, points in rows]


def _mark(s: Session, line: int, awards: list[int]) -> None:
    """Mark the awards as paid by `line`, only where no line paid them yet: two runs at once (the station
    lock makes them take turns anyway) cannot both pay one award."""
    for first in range(0, len(awards), _CHUNK):
        chunk = awards[first:first + _CHUNK]
        done = s.execute(update(PointAward)
                         .where(PointAward.movement_id.in_(chunk), PointAward.settlement_id.is_(None))
                         .values(settlement_id=line).execution_options(synchronize_session=False))
        if getattr(done, "rowcount", 0) != len(chunk):
            raise RewardError("an award was paid by another settlement meanwhile: run it again")


def _reversals(s: Session, station: str, start: dt.date, end: dt.date, after: dt.datetime,
               since: dt.datetime | None) -> list[tuple[str, int, int]]:
    """(group, milli_cents, points < 0) of the earn reversals this settlement deducts, at the line that
    paid each award: reversals dated before `after` of awards this settlement pays, and reversals booked
    in [since, after) of awards an earlier settlement paid."""
    original = aliased(Movement)
    paid = aliased(LoyaltySettlement)
    now_paid = and_(paid.period_start == start, paid.period_end == end)
    earlier = paid.period_end < start
    if since is not None:
        earlier = and_(earlier, Movement.at >= since)
    rows = s.execute(select(paid.product_group, paid.milli_cents, Movement.amount)
                     .select_from(PointAward)
                     .join(original, original.id == PointAward.movement_id)
                     .join(Movement, Movement.key == literal(ledger.REVERSAL) + original.key)
                     .join(paid, paid.id == PointAward.settlement_id)
                     .where(original.kind == "earn", Movement.kind == "reversal",
                            PointAward.station_id == station, Movement.at < after, or_(now_paid, earlier))
                     ).all()
    return [(group, int(value), int(points)) for group, value, points in rows]


def _refuse_order(s: Session, station: str, start: dt.date, end: dt.date) -> dt.date | None:
    """The end of the station's last settled period; RewardError when [start, end] is not after it."""
    overlap = s.execute(select(LoyaltySettlement.period_start, LoyaltySettlement.period_end)
                        .where(LoyaltySettlement.station_id == station, LoyaltySettlement.period_start <= end,
                               LoyaltySettlement.period_end >= start).limit(1)).first()
    if overlap is not None:
        raise RewardError("the period overlaps a settled one", station=station,
                          settled=f"{overlap[0].isoformat()}..{overlap[1].isoformat()}")
    last: dt.date | None = s.scalar(select(func.max(LoyaltySettlement.period_end))
                                    .where(LoyaltySettlement.station_id == station))
    if last is not None and last >= start:
        # a settlement pays what is not paid yet up to its end: going back would pay a later period's
        # late sales as an earlier period's
        raise RewardError("the station is settled up to a later day: settle the period after it",
                          station=station, settled_to=last.isoformat())
    return last


def settle(s: Session, station: str, start: dt.date, end: dt.date, actor: str,
           now: dt.datetime) -> list[LoyaltySettlement]:
    """The station's settlement for [start, end] (inclusive local days), written once; asked again, the
    lines as written. A period must have ended and must come after the station's settled periods.

    Runs for one station take turns (the station's row is written first: a row lock on PostgreSQL, the
    write lock on SQLite, held to commit), so two at once write one settlement and no overlapping periods;
    the awards are marked by a conditional update besides.
    """
    where = get(s, Station, station, "station")
    if end < start:
        raise ConfigError("the period ends before it starts", key="end")
    s.execute(update(Station).where(Station.id == station).values(name=Station.name)
              .execution_options(synchronize_session=False))
    stored = settled(s, station, start, end)
    if stored:
        return stored
    zone = _zone(where.timezone)
    if _day(now, zone) <= end:
        raise RewardError("the period has not ended yet", station=station, end=end.isoformat())
    last = _refuse_order(s, station, start, end)
    table = [(v.product_group, v.valid_from, v.milli_cents) for v in values(s, station)]
    first, after = _midnight(start, zone), _midnight(end + dt.timedelta(days=1), zone)
    points: dict[Line, int] = {}
    awards: dict[Line, list[int]] = {}
    late = 0
    for mid, group, at, count in _unpaid(s, station, after):
        value = value_on(table, group, _day(at, zone))
        if value is None:
            raise ConfigError("no point value in force for the station's group on that day: set one",
                              station=station, group=group or "(none)", day=_day(at, zone).isoformat())
        points[group, value] = points.get((group, value), 0) + count
        awards.setdefault((group, value), []).append(mid)
        late += at < first
    rows = {line: _line(station, start, end, line, actor, now) for line in awards}
    s.add_all(rows.values())
    s.flush()
    for line, row in rows.items():
        _mark(s, row.id, awards[line])
    since = None if last is None else _midnight(last + dt.timedelta(days=1), zone)
    for group, value, count in _reversals(s, station, start, end, after, since):
        points[group, value] = points.get((group, value), 0) + count
    if not points:
        points[NOTHING, 0] = 0
    for line, total in points.items():
        row = rows.get(line) or _line(station, start, end, line, actor, now)
        row.points, row.amount_cents = total, total * line[1] // 1000
        s.add(row)
    s.flush()
    written = settled(s, station, start, end)
    audit(s, actor=actor, action="settlement.run", subject=f"station:{station}", now=now,
          start=start.isoformat(), end=end.isoformat(), points=sum(r.points for r in written),
          cents=sum(r.amount_cents for r in written), awards=sum(map(len, awards.values())), late=late)
    return written


def _line(station: str, start: dt.date, end: dt.date, line: Line, actor: str,
          now: dt.datetime) -> LoyaltySettlement:
    return LoyaltySettlement(station_id=station, period_start=start, period_end=end, product_group=line[0],
                             milli_cents=line[1], points=0, amount_cents=0, created_at=now, actor=actor[:64])


def _value(milli_cents: int) -> str:
    return f"{milli_cents // 1000}.{milli_cents % 1000:03d}"


def printout(rows: Sequence[LoyaltySettlement]) -> str:
    """A settlement as text, the same every time it is printed (it reads only the stored lines)."""
    if not rows:
        return "no settlement\n"
    head = rows[0]
    out = [(f"Loyalty settlement  station {head.station_id}  {head.period_start.isoformat()} .. "
           f"{head.period_end.isoformat()}"),
           f"{'GROUP':<16} {'POINTS':>12} {'CENTS/POINT':>12} {'AMOUNT':>14}"]
    for r in rows:
        nothing = r.product_group == NOTHING and r.points == 0 and r.milli_cents == 0
        group = "(nothing granted)" if nothing else r.product_group or "-"
        out.append(f"{group:<16} {r.points:>12} {_value(r.milli_cents):>12} {money(r.amount_cents):>14}")
    out.append(f"{'TOTAL':<16} {sum(r.points for r in rows):>12} {'':>12} "
               f"{money(sum(r.amount_cents for r in rows)):>14}")
    out.append(f"settled {head.created_at.isoformat(sep=' ', timespec='minutes')} by {head.actor}")
    return "\n".join(out) + "\n"
