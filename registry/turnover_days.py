"""Local days for the turnover reports: a sale belongs to the date on its station's wall clock.

Sales are stored in naive UTC (transactions.finished_at); a station names its time zone (stations.timezone,
an IANA name). A station unknown to the registry, or naming a zone this machine does not know, counts in
UTC: the summary and the straight queries both read zones from here, so they agree.
A period of days [start, end] is one range of instants per time zone, from the local midnight starting
`start` to the one after `end`; that is exact except in a zone that turns its clocks back across
midnight, where an hour of the earlier day comes again after it (none of the stations' zones do today).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from registry.models import Station, Transaction

__all__ = ["UTC_NAME", "in_period", "local_day", "station_zones", "utc_bounds"]

UTC_NAME = "UTC"


@lru_cache(maxsize=256)
def _zone(name: str) -> dt.tzinfo:
    if name == UTC_NAME:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def local_day(finished_at: dt.datetime, zone: str) -> dt.date:
    """The date on the wall clock of `zone` at the naive UTC instant `finished_at`.

    >>> late = dt.datetime(2026, 3, 1, 22, 30)
    >>> local_day(late, "Europe/Moscow"), local_day(late, "UTC")
    (datetime.date(2026, 3, 2), datetime.date(2026, 3, 1))
    """
    key = (zone, finished_at.year, finished_at.month, finished_at.day, finished_at.hour)
    offset = _offsets.get(key, _UNKNOWN)
    if offset is _UNKNOWN:
        offset = _hour_offset(_zone(zone), finished_at.replace(minute=0, second=0, microsecond=0))
        if len(_offsets) >= _MOST_OFFSETS:
            _offsets.clear()
        _offsets[key] = offset
    if isinstance(offset, dt.timedelta):
        return (finished_at + offset).date()
    return finished_at.replace(tzinfo=dt.UTC).astimezone(_zone(zone)).date()


# A zone's offset per UTC hour, so a rollup over millions of sales converts each hour once.
_UNKNOWN = object()
_MOST_OFFSETS = 1 << 17
_offsets: dict[tuple[str, int, int, int, int], object] = {}


def _hour_offset(tz: dt.tzinfo, hour: dt.datetime) -> dt.timedelta | None:
    """The zone's UTC offset through the UTC hour starting `hour`; None when its clocks change within it."""
    first = hour.replace(tzinfo=dt.UTC).astimezone(tz).utcoffset()
    last = (hour + dt.timedelta(hours=1, microseconds=-1)).replace(tzinfo=dt.UTC).astimezone(tz).utcoffset()
    return first if first == last else None


def utc_bounds(start: dt.date, end: dt.date, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """Naive UTC [from, until) of the local days start..end (inclusive) in `zone`.

    >>> utc_bounds(dt.date(2026, 3, 1), dt.date(2026, 3, 1), "Europe/Moscow")
    (datetime.datetime(2026, 2, 28, 21, 0), datetime.datetime(2026, 3, 1, 21, 0))
    """
    tz = _zone(zone)

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.UTC).replace(tzinfo=None)

    return midnight(start), midnight(end + dt.timedelta(days=1))


def station_zones(s: Session) -> dict[str, str]:
    """Station id -> its time zone, for the stations not in UTC (the others, and unknown ones, are UTC)."""
    rows = s.execute(select(Station.id, Station.timezone).where(Station.timezone != UTC_NAME)).all()
    return {sid: tz for sid, tz in rows if _zone(tz) is not dt.UTC}


def in_period(start: dt.date, end: dt.date, zones: Mapping[str, str],
              stations: Iterable[str] | None) -> ColumnElement[bool]:
    """SQL: a sale finished on a local day start..end of its station, at one of `stations` (None: any).

    One range of finished_at per time zone in use; stations in UTC (or unknown) are those not in `zones`.
    """
    wanted = None if stations is None else set(stations)
    by_zone: dict[str, set[str]] = {}
    for sid, tz in zones.items():
        if wanted is None or sid in wanted:
            by_zone.setdefault(tz, set()).add(sid)
    terms: list[ColumnElement[bool]] = []
    for tz, members in sorted(by_zone.items()):
        lo, hi = utc_bounds(start, end, tz)
        terms.append(and_(Transaction.station_id.in_(sorted(members)), Transaction.finished_at >= lo,
                          Transaction.finished_at < hi))
    lo, hi = utc_bounds(start, end, UTC_NAME)
    if wanted is None:
        at_utc: ColumnElement[bool] = Transaction.station_id.not_in(sorted(zones)) if zones else true()
    else:
        plain = sorted(wanted - set(zones))
        at_utc = Transaction.station_id.in_(plain) if plain else false()
    terms.append(and_(at_utc, Transaction.finished_at >= lo, Transaction.finished_at < hi))
    return or_(*terms)
