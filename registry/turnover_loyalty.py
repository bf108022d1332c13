"""The reports beside turnover (issue 16): loyalty points granted and settled per station, and vouchers
issued and used per product, over a period of days.

Points granted are the station's earn awards (point_awards of "earn" movements) dated on the period's local
days of the station (registry.turnover_days), and the points of those taken back since (a voided sale's
reversal); settled is what registry.loyalty.settlement wrote for periods ending within the period.
Vouchers: those issued on the period's days (UTC: vouchers belong to no station), and those redeemed then,
by product, with their litres. `stations` is the user's scope (None: all). Queries only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from registry.fleet import ledger
from registry.models import LoyaltySettlement, Movement, PointAward, Station, Voucher
from registry.turnover_days import UTC_NAME, station_zones, utc_bounds

__all__ = ["StationPoints", "VoucherUse", "points_by_station", "station_names", "vouchers_by_product"]


@dataclass(frozen=True)
class StationPoints:
    station_id: str
    granted: int              # points of earn awards dated in the period
    taken_back: int           # of those, points taken back since (their sales voided or returned)
    settled_points: int       # points of settlements whose period ends in the period
    settled_cents: int        # what those settlements pay the station


@dataclass(frozen=True)
class VoucherUse:
    product: str
    issued: int
    issued_cl: int
    redeemed: int
    redeemed_cl: int
    voided: int


def _awarded_in(start: dt.date, end: dt.date, stations: Iterable[str] | None,
                zones: dict[str, str]) -> ColumnElement[bool]:
    """SQL: an award dated on a local day start..end of its station (one of `stations`; None: any)."""
    wanted = None if stations is None else set(stations)
    groups: dict[str, set[str]] = {}
    for sid, tz in zones.items():
        if wanted is None or sid in wanted:
            groups.setdefault(tz, set()).add(sid)
    terms = []
    for tz, members in sorted(groups.items()):
        lo, hi = utc_bounds(start, end, tz)
        terms.append(and_(PointAward.station_id.in_(sorted(members)), PointAward.earned_at >= lo,
                          PointAward.earned_at < hi))
    lo, hi = utc_bounds(start, end, UTC_NAME)
    if wanted is None:
        plain: ColumnElement[bool] = PointAward.station_id.not_in(sorted(zones)) if zones else \
            PointAward.station_id.is_not(None)
    else:
        rest = sorted(wanted - set(zones))
        plain = PointAward.station_id.in_(rest) if rest else false()
    terms.append(and_(plain, PointAward.earned_at >= lo, PointAward.earned_at < hi))
    return or_(*terms)


def points_by_station(s: Session, start: dt.date, end: dt.date,
                      stations: Iterable[str] | None = None) -> list[StationPoints]:
    """Per station that granted or settled points in the period, sorted by station id."""
    scope = None if stations is None else sorted(set(stations))
    when = _awarded_in(start, end, scope, station_zones(s))
    granted = {sid: int(points or 0) for sid, points in s.execute(
        select(PointAward.station_id, func.sum(PointAward.points))
        .join(Movement, Movement.id == PointAward.movement_id)
        .where(Movement.kind == "earn", when).group_by(PointAward.station_id))}
    reversal = aliased(Movement)          # a reversal's key is the earn's, after ledger.REVERSAL
    back = {sid: -int(points or 0) for sid, points in s.execute(
        select(PointAward.station_id, func.sum(reversal.amount))
        .join(Movement, Movement.id == PointAward.movement_id)
        .join(reversal, reversal.key == literal(ledger.REVERSAL) + Movement.key)
        .where(Movement.kind == "earn", reversal.kind == "reversal", when).group_by(PointAward.station_id))}
    settled_q = select(LoyaltySettlement.station_id, func.sum(LoyaltySettlement.points),
                       func.sum(LoyaltySettlement.amount_cents)).where(
        LoyaltySettlement.period_end >= start, LoyaltySettlement.period_end <= end)
    if scope is not None:
        settled_q = settled_q.where(LoyaltySettlement.station_id.in_(scope))
    settled = {sid: (int(p or 0), int(c or 0))
               for sid, p, c in s.execute(settled_q.group_by(LoyaltySettlement.station_id))}
    ids = sorted({*(k for k in granted if k is not None), *settled})
    return [StationPoints(sid, int(granted.get(sid) or 0), int(back.get(sid) or 0),
                          *settled.get(sid, (0, 0))) for sid in ids]


def vouchers_by_product(s: Session, start: dt.date, end: dt.date) -> list[VoucherUse]:
    """Per product: vouchers issued, redeemed and voided on the period's days (UTC), sorted by product."""
    lo, hi = utc_bounds(start, end, UTC_NAME)
    issued = {p: (int(n), int(cl or 0)) for p, n, cl in s.execute(
        select(Voucher.product, func.count(), func.sum(Voucher.volume_cl))
        .where(Voucher.issued_at >= lo, Voucher.issued_at < hi).group_by(Voucher.product))}
    redeemed = {p: (int(n), int(cl or 0)) for p, n, cl in s.execute(
        select(Voucher.product, func.count(), func.sum(Voucher.volume_cl))
        .where(Voucher.status == "redeemed", Voucher.redeemed_at >= lo, Voucher.redeemed_at < hi)
        .group_by(Voucher.product))}
    voided = {p: int(n) for p, n in s.execute(
        select(Voucher.product, func.count()).where(Voucher.status == "void", Voucher.issued_at >= lo,
                                                    Voucher.issued_at < hi).group_by(Voucher.product))}
    return [VoucherUse(p, *issued.get(p, (0, 0)), *redeemed.get(p, (0, 0)), voided.get(p, 0))
            for p in sorted({*issued, *redeemed, *voided})]


def station_names(s: Session, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    rows = s.execute(select(Station.id, Station.name).where(Station.id.in_(wanted)))
    return {sid: name for sid, name in rows}
