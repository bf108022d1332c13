"""Reports as JSON (issue 16), and the endpoint functions the report pages (registry.web.pages_reports)
render: turnover (registry.turnover), loyalty points per station and vouchers (registry.turnover_loyalty),
terminals online and offline with their backlogs (registry.reports).

Who sees what:
- operators: every report, every station, customer and card;
- station managers: turnover of their stations by station, pump, product or day (not by customer or card,
  nor of one: registry.web.scope shows them no fleet customer), points of their stations, their terminals;
  vouchers are the network's, operators' only;
- fleet customers: turnover of their own customer's sales only (any station, their cards), no other report;
- cardholders: none (their points page is theirs).
A customer, card or station outside the user's scope is NotFound (registry.web.scope), as a missing one.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from registry import reports
from registry.models import Card, Customer, Device, Product, Station
from registry.turnover import BY, TurnoverQuery, turnover
from registry.turnover_loyalty import points_by_station, station_names, vouchers_by_product
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput, Forbidden, NotFound
from registry.web.scope import card_for, customer_for, station_for, station_ids
from registry.web.today import stations_today

__all__ = ["LoyaltyOut", "TerminalsOut", "TurnoverAsk", "TurnoverOut", "VouchersOut", "loyalty_report",
           "router", "terminals_report", "turnover_report", "vouchers_report"]

router = APIRouter(prefix="/api/reports", tags=["reports"])
CtxApi = Annotated[Ctx, Depends(api_ctx)]
TURNOVER_ROLES = ("operator", "station", "fleet")
STATION_BY = ("station", "pump", "product", "day")


class TurnoverAsk(BaseModel):
    """What a user picks: the period (local days, inclusive), how to group, and filters."""

    start: dt.date | None = None
    end: dt.date | None = None
    by: str = "station"
    station: str | None = None
    product: str | None = None
    customer: int | None = None
    card: int | None = None


class TurnoverLine(BaseModel):
    key: list[str | int | None]
    label: str
    sales: int
    volume_cl: int
    amount_cents: int


class TurnoverOut(BaseModel):
    start: dt.date
    end: dt.date
    by: str
    station: str | None
    product: str | None
    customer: int | None
    card: int | None
    source: str                 # "station summary", "account summary" or "straight"
    lines: list[TurnoverLine]
    total: TurnoverLine


class StationPointsOut(BaseModel):
    station_id: str
    station: str
    granted: int
    taken_back: int
    settled_points: int
    settled_cents: int


class LoyaltyOut(BaseModel):
    start: dt.date
    end: dt.date
    stations: list[StationPointsOut]


class VoucherLine(BaseModel):
    product: str
    issued: int
    issued_cl: int
    redeemed: int
    redeemed_cl: int
    voided: int


class VouchersOut(BaseModel):
    start: dt.date
    end: dt.date
    products: list[VoucherLine]


class TerminalLine(BaseModel):
    device: str
    station: str
    online: bool
    last_seen: str
    software: str
    config: str
    backlog: int
    oldest_unsent_s: int
    missing: int                # sale numbers below the highest received, not received


class TerminalsOut(BaseModel):
    online: int
    offline: int
    terminals: list[TerminalLine]


def period(ctx: Ctx, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """The period asked; by default this month up to today (the latest local date of the user's stations)."""
    today = stations_today(ctx)
    end = end or today
    start = start or end.replace(day=1)
    if end < start:
        raise BadInput(ctx.t("reports.bad_period"))
    return start, end


def _query(ctx: Ctx, ask: TurnoverAsk) -> TurnoverQuery:
    """The report's query within the user's scope; NotFound for a filter outside it."""
    need(ctx, *TURNOVER_ROLES)
    if ask.by not in BY:
        raise BadInput(ctx.t("reports.bad_by"))
    start, end = period(ctx, ask.start, ask.end)
    role = ctx.user.role
    stations: frozenset[str] | None = None
    customer = ask.customer
    if role == "station":
        allowed = station_ids(ctx)
        stations = frozenset(allowed or ())
        if ask.by not in STATION_BY:
            raise Forbidden()
    if role == "fleet":
        if ctx.user.customer_id is None:
            raise Forbidden()
        customer = ctx.user.customer_id if customer is None else customer
    if customer is not None:
        customer_for(ctx, customer)
    if ask.card is not None:
        card_for(ctx, ask.card)
    if ask.station is not None:
        if role == "fleet":                   # their own sales at any station: the station's name is public
            if ctx.s.get(Station, ask.station) is None:
                raise NotFound("station")
        else:
            station_for(ctx, ask.station)
    return TurnoverQuery(start, end, by=ask.by, station=ask.station, product=ask.product or None,
                         customer_id=customer, card_id=ask.card, stations=stations)


def _labels(ctx: Ctx, by: str, keys: list[tuple[object, ...]]) -> list[str]:
    """What a person reads for each line's key: names, masked card numbers, dates."""
    firsts = [k[0] for k in keys]
    if by in ("station", "pump"):
        stations = station_names(ctx.s, [str(x) for x in firsts])
        pump = ctx.t("reports.pump")
        return [stations.get(str(k[0]), str(k[0])) + (f" · {pump} {k[1]}" if by == "pump" else "")
                for k in keys]
    if by == "product":
        products = {code: name for code, name in ctx.s.execute(select(Product.code, Product.name))}
        return [products.get(str(x), str(x)) if x else ctx.t("reports.no_product") for x in firsts]
    ids = [x for x in firsts if isinstance(x, int)]
    if by == "card":
        masked = {i: m for i, m in ctx.s.execute(select(Card.id, Card.masked).where(Card.id.in_(ids)))}
        return [masked.get(x, "?") if isinstance(x, int) else ctx.t("reports.no_card") for x in firsts]
    if by == "customer":
        rows = ctx.s.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids)))
        names = {i: n for i, n in rows}
        return [names.get(x, "?") if isinstance(x, int) else ctx.t("reports.no_customer") for x in firsts]
    return [x.isoformat() if isinstance(x, dt.date) else str(x) for x in firsts]


def _key(value: object) -> str | int | None:
    if value is None or isinstance(value, int | str):
        return value
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def turnover_report(ctx: Ctx, ask: TurnoverAsk) -> TurnoverOut:
    q = _query(ctx, ask)
    found = turnover(ctx.s, q)
    keys = [line.key for line in found.lines]
    labels = _labels(ctx, q.by, keys)
    lines = [TurnoverLine(key=[_key(v) for v in line.key], label=label, sales=line.sales,
                          volume_cl=line.volume_cl, amount_cents=line.amount_cents)
             for line, label in zip(found.lines, labels, strict=True)]
    total = found.totals
    return TurnoverOut(start=q.start, end=q.end, by=q.by, station=q.station, product=q.product,
                       customer=q.customer_id, card=q.card_id, source=found.path, lines=lines,
                       total=TurnoverLine(key=[], label=ctx.t("reports.total"), sales=total.sales,
                                          volume_cl=total.volume_cl, amount_cents=total.amount_cents))


def loyalty_report(ctx: Ctx, start: dt.date | None, end: dt.date | None) -> LoyaltyOut:
    need(ctx, "operator", "station")
    start, end = period(ctx, start, end)
    allowed = station_ids(ctx)
    rows = points_by_station(ctx.s, start, end, allowed)
    names = station_names(ctx.s, [r.station_id for r in rows])
    return LoyaltyOut(start=start, end=end, stations=[
        StationPointsOut(station_id=r.station_id, station=names.get(r.station_id, r.station_id),
                         granted=r.granted, taken_back=r.taken_back, settled_points=r.settled_points,
                         settled_cents=r.settled_cents) for r in rows])


def vouchers_report(ctx: Ctx, start: dt.date | None, end: dt.date | None) -> VouchersOut:
    need(ctx, "operator")
    start, end = period(ctx, start, end)
    found = vouchers_by_product(ctx.s, start, end)
    return VouchersOut(start=start, end=end, products=[
        VoucherLine(product=v.product, issued=v.issued, issued_cl=v.issued_cl, redeemed=v.redeemed,
                    redeemed_cl=v.redeemed_cl, voided=v.voided) for v in found])


def terminals_report(ctx: Ctx) -> TerminalsOut:
    """Live terminals (registry.reports.devices) with the sale numbers missing (registry.reports.gaps)."""
    need(ctx, "operator", "station")
    allowed = station_ids(ctx)
    missing = {row[0]: int(row[3]) for row in reports.gaps(ctx.s, ctx.now).rows}
    oldest = {d: int(o or 0) for d, o in ctx.s.execute(select(Device.id, Device.backlog_oldest_s))}
    lines = []
    for row in reports.devices(ctx.s, ctx.now).rows:
        device, station, _, link, seen, software, _, config, _, backlog, _ = row
        if allowed is not None and station not in allowed:
            continue
        lines.append(TerminalLine(device=device, station=station, online=link == "online", last_seen=seen,
                                  software=software, config=config, backlog=int(backlog),
                                  oldest_unsent_s=oldest.get(device, 0), missing=missing.get(device, 0)))
    online = sum(1 for x in lines if x.online)
    return TerminalsOut(online=online, offline=len(lines) - online, terminals=lines)


@router.get("/turnover", response_model=TurnoverOut)
def api_turnover(ctx: CtxApi, start: dt.date | None = None, end: dt.date | None = None,
                 by: Annotated[str, Query(description=f"one of {', '.join(BY)}")] = "station",
                 station: str | None = None, product: str | None = None, customer: int | None = None,
                 card: int | None = None) -> TurnoverOut:
    """Sales, litres (centilitres) and amount (cents) per station, pump, product, card, customer or day."""
    return turnover_report(ctx, TurnoverAsk(start=start, end=end, by=by, station=station, product=product,
                                            customer=customer, card=card))


@router.get("/loyalty", response_model=LoyaltyOut)
def api_loyalty(ctx: CtxApi, start: dt.date | None = None, end: dt.date | None = None) -> LoyaltyOut:
    """Points granted per station in the period, those taken back since, and the settlements ending in it."""
    return loyalty_report(ctx, start, end)


@router.get("/vouchers", response_model=VouchersOut)
def api_vouchers(ctx: CtxApi, start: dt.date | None = None, end: dt.date | None = None) -> VouchersOut:
    """Vouchers issued, redeemed and voided per product in the period."""
    return vouchers_report(ctx, start, end)


@router.get("/terminals", response_model=TerminalsOut)
def api_terminals(ctx: CtxApi) -> TerminalsOut:
    """Terminals online and offline, their backlogs and the sale numbers still missing."""
    return terminals_report(ctx)
