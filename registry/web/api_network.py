"""The network's stations, pumps (nozzles), products and prices as JSON, and the endpoint functions the
pages (registry.web.pages_network) render. Operators change them; a station manager reads their own
stations (registry.web.scope). Terminals: registry.web.api_terminals, mounted here."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from registry import network, prices
from registry.models import Nozzle, Product, Station
from registry.web import api_terminals
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import NotFound
from registry.web.scope import station_for, station_ids

__all__ = ["router"]

router = APIRouter()
router.include_router(api_terminals.router)
READERS = ("operator", "station")


class StationOut(BaseModel):
    id: str
    name: str
    currency: str
    timezone: str
    pumps: int = 0
    nozzles: int = 0


class StationIn(BaseModel):
    id: str = Field(max_length=64)
    name: str = Field(max_length=200)
    currency: str = "EUR"
    timezone: str = "UTC"


class StationEdit(BaseModel):
    name: str = Field(max_length=200)
    currency: str
    timezone: str


class ProductOut(BaseModel):
    code: str
    name: str
    code3: str | None
    group: str


class ProductIn(BaseModel):
    code: str = Field(max_length=32)
    name: str = Field(max_length=100)
    code3: str | None = None
    group: str = "fuel"


class ProductEdit(BaseModel):
    name: str = Field(max_length=100)
    code3: str | None = None
    group: str = "fuel"


class NozzleOut(BaseModel):
    id: int
    station_id: str
    pump: int
    nozzle: int
    product_code: str
    product_name: str
    price_milli: int


class NozzleIn(BaseModel):
    pump: int
    nozzle: int
    product_code: str
    price_milli: int


class NozzleEdit(BaseModel):
    product_code: str
    price_milli: int


class CurrentPrice(BaseModel):
    """A product's price at a station now (prices: each distinct nozzle price, normally one)."""

    station_id: str
    product_code: str
    product_name: str
    prices: list[int]


class PriceChangeOut(BaseModel):
    id: int
    station_id: str
    product_code: str
    price_milli: int
    effective_at: dt.datetime
    created_by: str
    created_at: dt.datetime
    applied_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    status: str


class PriceChangeIn(BaseModel):
    """effective_at: UTC when naive (an aware time is converted); none or now: at once."""

    station_id: str
    product_code: str
    price_milli: int
    effective_at: dt.datetime | None = None


class PricesOut(BaseModel):
    current: list[CurrentPrice]
    pending: list[PriceChangeOut]
    history: list[PriceChangeOut]


class StationDetail(BaseModel):
    station: StationOut
    nozzles: list[NozzleOut]
    prices: PricesOut


# -- the endpoint functions (pages call them too) ------------------------------------------------------------

def _station_out(row: Station, rows: list[Nozzle] | None = None) -> StationOut:
    rows = rows or []
    return StationOut(id=row.id, name=row.name, currency=row.currency, timezone=row.timezone,
                      pumps=len({n.pump for n in rows}), nozzles=len(rows))


def _names(ctx: Ctx) -> dict[str, str]:
    return {p.code: p.name for p in network.products(ctx.s)}


def _nozzle_out(row: Nozzle, names: dict[str, str]) -> NozzleOut:
    return NozzleOut(id=row.id, station_id=row.station_id, pump=row.pump, nozzle=row.nozzle,
                     product_code=row.product_code, price_milli=row.price_milli,
                     product_name=names.get(row.product_code, row.product_code))


def change_out(row: prices.PriceChange) -> PriceChangeOut:
    return PriceChangeOut(id=row.id, station_id=row.station_id, product_code=row.product_code,
                          price_milli=row.price_milli, effective_at=row.effective_at,
                          created_by=row.created_by, created_at=row.created_at, applied_at=row.applied_at,
                          cancelled_at=row.cancelled_at, status=prices.status_of(row))


def _nozzles_of(ctx: Ctx, allowed: set[str] | None) -> dict[str, list[Nozzle]]:
    """Every nozzle of the stations allowed (None: all), by station, in one query."""
    query = select(Nozzle).order_by(Nozzle.station_id, Nozzle.pump, Nozzle.nozzle)
    if allowed is not None:
        query = query.where(Nozzle.station_id.in_(sorted(allowed)))
    found: dict[str, list[Nozzle]] = {}
    for n in ctx.s.scalars(query):
        found.setdefault(n.station_id, []).append(n)
    return found


def list_stations(ctx: Ctx) -> list[StationOut]:
    need(ctx, *READERS)
    allowed = station_ids(ctx)
    nozzles = _nozzles_of(ctx, allowed)
    return [_station_out(r, nozzles.get(r.id)) for r in network.stations(ctx.s, allowed)]


def add_station(ctx: Ctx, body: StationIn) -> StationOut:
    need(ctx, "operator")
    row = network.add_station(ctx.s, body.id, body.name, currency=body.currency, timezone=body.timezone,
                              actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _station_out(row)


def edit_station(ctx: Ctx, station_id: str, body: StationEdit) -> StationOut:
    need(ctx, "operator")
    station_for(ctx, station_id)
    row = network.edit_station(ctx.s, station_id, name=body.name, currency=body.currency,
                               timezone=body.timezone, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _station_out(row, network.nozzles(ctx.s, row.id))


def station_detail(ctx: Ctx, station_id: str) -> StationDetail:
    need(ctx, *READERS)
    row = station_for(ctx, station_id)
    names = _names(ctx)
    rows = network.nozzles(ctx.s, row.id)
    return StationDetail(station=_station_out(row, rows), nozzles=[_nozzle_out(n, names) for n in rows],
                         prices=price_list(ctx, station_id))


def list_products(ctx: Ctx) -> list[ProductOut]:
    need(ctx, *READERS)
    return [_product_out(p) for p in network.products(ctx.s)]


def _product_out(row: Product) -> ProductOut:
    return ProductOut(code=row.code, name=row.name, code3=row.code3, group=row.group)


def add_product(ctx: Ctx, body: ProductIn) -> ProductOut:
    need(ctx, "operator")
    row = network.add_product(ctx.s, body.code, body.name, code3=body.code3, group=body.group,
                              actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _product_out(row)


def edit_product(ctx: Ctx, code: str, body: ProductEdit) -> ProductOut:
    need(ctx, "operator")
    if ctx.s.get(Product, code) is None:
        raise NotFound("product")
    row = network.edit_product(ctx.s, code, name=body.name, code3=body.code3, group=body.group,
                               actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _product_out(row)


def add_nozzle(ctx: Ctx, station_id: str, body: NozzleIn) -> NozzleOut:
    need(ctx, "operator")
    station_for(ctx, station_id)
    row = network.add_nozzle(ctx.s, station_id, body.pump, body.nozzle, body.product_code, body.price_milli,
                             actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _nozzle_out(row, _names(ctx))


def edit_nozzle(ctx: Ctx, station_id: str, nozzle_id: int, body: NozzleEdit) -> NozzleOut:
    need(ctx, "operator")
    station_for(ctx, station_id)
    found = ctx.s.get(Nozzle, nozzle_id)
    if found is None or found.station_id != station_id:
        raise NotFound("nozzle")
    row = network.edit_nozzle(ctx.s, nozzle_id, product_code=body.product_code, price_milli=body.price_milli,
                              actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _nozzle_out(row, _names(ctx))


def price_list(ctx: Ctx, station_id: str | None = None) -> PricesOut:
    """Current prices, pending changes and the newest history, of one station or of every one in scope."""
    need(ctx, *READERS)
    allowed = station_ids(ctx)
    if station_id:
        allowed = {station_for(ctx, station_id).id}
    names = _names(ctx)
    current: dict[tuple[str, str], set[int]] = {}
    for sid, rows in _nozzles_of(ctx, allowed).items():
        for n in rows:
            current.setdefault((sid, n.product_code), set()).add(n.price_milli)
    return PricesOut(
        current=[CurrentPrice(station_id=sid, product_code=code, product_name=names.get(code, code),
                              prices=sorted(values)) for (sid, code), values in sorted(current.items())],
        pending=[change_out(c) for c in prices.pending(ctx.s, allowed)],
        history=[change_out(c) for c in prices.changes(ctx.s, allowed, most=50) if c.applied_at or
                 c.cancelled_at])


def schedule_price(ctx: Ctx, body: PriceChangeIn) -> PriceChangeOut:
    """A price change; one effective now is applied at once (the registry republishes within its poll)."""
    need(ctx, "operator")
    station_for(ctx, body.station_id)
    row = prices.schedule(ctx.s, body.station_id, body.product_code, body.price_milli, body.effective_at,
                          actor=ctx.actor, now=ctx.now)
    prices.apply_due(ctx.s, ctx.now, actor=ctx.actor)
    ctx.s.commit()
    return change_out(row)


def cancel_price(ctx: Ctx, change_id: int) -> PriceChangeOut:
    need(ctx, "operator")
    row = ctx.s.get(prices.PriceChange, change_id)
    if row is None:
        raise NotFound("price change")
    station_for(ctx, row.station_id)
    prices.cancel(ctx.s, change_id, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return change_out(row)


# -- the JSON API ----------------------------------------------------------------------------------------

CtxApi = Annotated[Ctx, Depends(api_ctx)]


@router.get("/api/network/stations", response_model=list[StationOut], tags=["network"])
def api_stations(ctx: CtxApi) -> list[StationOut]:
    return list_stations(ctx)


@router.post("/api/network/stations", response_model=StationOut, tags=["network"])
def api_add_station(body: StationIn, ctx: CtxApi) -> StationOut:
    return add_station(ctx, body)


@router.get("/api/network/stations/{station_id}", response_model=StationDetail, tags=["network"])
def api_station(station_id: str, ctx: CtxApi) -> StationDetail:
    return station_detail(ctx, station_id)


@router.put("/api/network/stations/{station_id}", response_model=StationOut, tags=["network"])
def api_edit_station(station_id: str, body: StationEdit, ctx: CtxApi) -> StationOut:
    return edit_station(ctx, station_id, body)


@router.post("/api/network/stations/{station_id}/nozzles", response_model=NozzleOut, tags=["network"])
def api_add_nozzle(station_id: str, body: NozzleIn, ctx: CtxApi) -> NozzleOut:
    return add_nozzle(ctx, station_id, body)


@router.put("/api/network/stations/{station_id}/nozzles/{nozzle_id}", response_model=NozzleOut,
            tags=["network"])
def api_edit_nozzle(station_id: str, nozzle_id: int, body: NozzleEdit, ctx: CtxApi) -> NozzleOut:
    return edit_nozzle(ctx, station_id, nozzle_id, body)


@router.get("/api/network/products", response_model=list[ProductOut], tags=["network"])
def api_products(ctx: CtxApi) -> list[ProductOut]:
    return list_products(ctx)


@router.post("/api/network/products", response_model=ProductOut, tags=["network"])
def api_add_product(body: ProductIn, ctx: CtxApi) -> ProductOut:
    return add_product(ctx, body)


@router.put("/api/network/products/{code}", response_model=ProductOut, tags=["network"])
def api_edit_product(code: str, body: ProductEdit, ctx: CtxApi) -> ProductOut:
    return edit_product(ctx, code, body)


@router.get("/api/network/prices", response_model=PricesOut, tags=["network"])
def api_prices(ctx: CtxApi, station: str = "") -> PricesOut:
    return price_list(ctx, station or None)


@router.post("/api/network/prices", response_model=PriceChangeOut, tags=["network"])
def api_schedule_price(body: PriceChangeIn, ctx: CtxApi) -> PriceChangeOut:
    return schedule_price(ctx, body)


@router.post("/api/network/prices/{change_id}/cancel", response_model=PriceChangeOut, tags=["network"])
def api_cancel_price(change_id: int, ctx: CtxApi) -> PriceChangeOut:
    return cancel_price(ctx, change_id)
