"""The latest sales as they arrive: /sales refreshes itself every few seconds (the simulator's sales appear
while they are made), /api/sales the same as JSON. Operators see every station, station managers theirs,
fleet customers their own accounts' sales. Card numbers only masked, as stored."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, select
from starlette.responses import Response

from registry.models import Station, Transaction
from registry.web.deps import Ctx, api_ctx, need, page_ctx
from registry.web.render import page, templates
from registry.web.scope import account_ids, station_ids

__all__ = ["router"]

router = APIRouter()


class SaleOut(BaseModel):
    id: int
    finished_at: dt.datetime
    station_id: str
    station: str
    pump: int
    nozzle: int
    product: str | None
    volume_cl: int
    amount_cents: int
    kind: str
    card_masked: str
    flags: str
    held: bool


def _scoped(ctx: Ctx, q: Select[Any]) -> Select[Any]:
    stations, accounts = station_ids(ctx), account_ids(ctx)
    if ctx.user.role == "fleet":
        return q.where(Transaction.account_id.in_(accounts or {-1}))
    if stations is not None:
        return q.where(Transaction.station_id.in_(stations or {""}))
    return q


def latest_sales(ctx: Ctx, *, station: str = "", limit: int = 50) -> list[SaleOut]:
    need(ctx, "operator", "station", "fleet")
    q = _scoped(ctx, select(Transaction).order_by(Transaction.id.desc()).limit(max(1, min(limit, 500))))
    if station:
        q = q.where(Transaction.station_id == station)
    rows: list[Transaction] = list(ctx.s.scalars(q))
    names = {sid: name for sid, name in ctx.s.execute(select(Station.id, Station.name).where(
        Station.id.in_({r.station_id for r in rows})))}
    return [SaleOut(id=r.id, finished_at=r.finished_at, station_id=r.station_id,
                    station=names.get(r.station_id, r.station_id), pump=r.pump, nozzle=r.nozzle,
                    product=r.product, volume_cl=r.volume_cl, amount_cents=r.amount_cents, kind=r.kind,
                    card_masked=r.card_masked, flags=r.flags, held=r.held) for r in rows]


@router.get("/api/sales", response_model=list[SaleOut], tags=["sales"])
def api_sales(ctx: Annotated[Ctx, Depends(api_ctx)], station: str = "",
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[SaleOut]:
    """The latest sales, newest first, in the caller's scope."""
    return latest_sales(ctx, station=station, limit=limit)


@router.get("/sales", include_in_schema=False)
def sales_page(ctx: Annotated[Ctx, Depends(page_ctx)], station: str = "") -> Response:
    return page(ctx, "sales.html", sales=latest_sales(ctx, station=station), station=station)


@router.get("/sales/live", include_in_schema=False)
def sales_live(ctx: Annotated[Ctx, Depends(page_ctx)], station: str = "") -> Response:
    """The table alone: what the page's data-live element fetches."""
    sales = latest_sales(ctx, station=station)
    body = templates().get_template("sales_table.html").render(t=ctx.t, sales=sales)
    return Response(body, media_type="text/html")
