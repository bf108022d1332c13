"""The network's pages: stations and their pumps, products, prices (scheduled changes) and terminals,
rendered over registry.web.api_network's and api_terminals' endpoint functions. A form's price is typed per
litre ("1.659"); a change's time is the station's wall clock (its time zone), stored in UTC. A terminal's
events are shown on its station's clock; a code the back office knows is named in the page's language,
any other shown as the terminal sent it (escaped, as every value)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from starlette.responses import Response

from registry import device_alarms, network
from registry.web import api_network as api
from registry.web import api_terminals as terminals
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import BadInput
from registry.web.render import page, redirect

__all__ = ["EVENT_CODES", "local_time", "parse_local", "parse_price", "price_text", "router"]

router = APIRouter(include_in_schema=False)
CtxPage = Annotated[Ctx, Depends(page_ctx)]
Text = Annotated[str, Form()]
_PRICE = re.compile(r"([0-9]{1,4})(?:[.,]([0-9]{1,3}))?")
# the terminal's event codes with a text network.event_<code> (firmware: grep 'event("')
EVENT_CODES = frozenset({"door_open", "door_closed", "tamper", "tamper_cleared", "paper_low", "paper_ok",
                         "sales_parked", "config_refused", "config_expired", "stop_list_refused",
                         "restarting", "update_rolled_back", "update_refused", "pump_node_restarted"})


def price_text(milli: int | None) -> str:
    """1659 -> "1.659" (per litre)."""
    return "" if milli is None else f"{milli // 1000}.{milli % 1000:03d}"


def parse_price(ctx: Ctx, text: str) -> int:
    """ "1.659" or "1,659" per litre -> 1659 thousandths, exactly (no float)."""
    found = _PRICE.fullmatch(text.strip())
    if found is None:
        raise BadInput(ctx.t("network.bad_price"))
    return int(found.group(1)) * 1000 + int((found.group(2) or "0").ljust(3, "0"))


def _int(ctx: Ctx, text: str, key: str) -> int:
    if not text.strip().isdigit() or len(text.strip()) > 6:
        raise BadInput(ctx.t("network.bad_number", field=ctx.t(key)))
    return int(text)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def parse_local(ctx: Ctx, text: str, timezone: str) -> dt.datetime | None:
    """A datetime-local field ("2026-12-01T06:00") on the station's clock -> naive UTC; empty: None."""
    if not text.strip():
        return None
    try:
        local = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(ctx.t("network.bad_time")) from None
    if local.tzinfo is not None:
        raise BadInput(ctx.t("network.bad_time"))
    zone = _zone(timezone)
    first, second = (local.replace(tzinfo=zone, fold=f).astimezone(dt.UTC) for f in (0, 1))
    if first.astimezone(zone).replace(tzinfo=None) != local:       # skipped when the clocks went forward
        raise BadInput(ctx.t("network.time_skipped"))
    if first != second:                                              # shown twice when they went back
        raise BadInput(ctx.t("network.time_twice"))
    return first.replace(tzinfo=None)


def local_time(at: dt.datetime | None, timezone: str) -> str:
    """A naive UTC time on the station's clock: "2026-12-01 07:00"."""
    if at is None:
        return ""
    return at.replace(tzinfo=dt.UTC).astimezone(_zone(timezone)).strftime("%Y-%m-%d %H:%M")


def _zones(ctx: Ctx) -> dict[str, str]:
    return {s.id: s.timezone for s in network.stations(ctx.s)}


def _render(ctx: Ctx, name: str, **values: Any) -> Response:
    return page(ctx, name, price=price_text, local=local_time, operator=ctx.user.role == "operator",
                **values)


# -- stations and their pumps --------------------------------------------------------------------------------

@router.get("/network/stations")
def stations_page(ctx: CtxPage) -> Response:
    return _render(ctx, "network/stations.html", stations=api.list_stations(ctx))


@router.post("/network/stations")
def stations_add(ctx: CtxPage, id: Text, name: Text, currency: Text = "EUR",
                 timezone: Text = "UTC") -> Response:
    row = api.add_station(ctx, api.StationIn(id=id, name=name, currency=currency, timezone=timezone))
    return redirect(f"/network/stations/{row.id}")


@router.get("/network/stations/{station_id}")
def station_page(station_id: str, ctx: CtxPage) -> Response:
    detail = api.station_detail(ctx, station_id)
    return _render(ctx, "network/station.html", d=detail, products=api.list_products(ctx),
                   zone=detail.station.timezone)


@router.post("/network/stations/{station_id}")
def station_edit(station_id: str, ctx: CtxPage, name: Text, currency: Text, timezone: Text) -> Response:
    api.edit_station(ctx, station_id, api.StationEdit(name=name, currency=currency, timezone=timezone))
    return redirect(f"/network/stations/{station_id}")


@router.post("/network/stations/{station_id}/nozzles")
def nozzle_add(station_id: str, ctx: CtxPage, pump: Text, nozzle: Text, product_code: Text,
               price: Text) -> Response:
    body = api.NozzleIn(pump=_int(ctx, pump, "network.pump"), nozzle=_int(ctx, nozzle, "network.nozzle"),
                        product_code=product_code, price_milli=parse_price(ctx, price))
    api.add_nozzle(ctx, station_id, body)
    return redirect(f"/network/stations/{station_id}")


@router.post("/network/stations/{station_id}/nozzles/{nozzle_id}")
def nozzle_edit(station_id: str, nozzle_id: int, ctx: CtxPage, product_code: Text, price: Text) -> Response:
    api.edit_nozzle(ctx, station_id, nozzle_id,
                    api.NozzleEdit(product_code=product_code, price_milli=parse_price(ctx, price)))
    return redirect(f"/network/stations/{station_id}")


# -- products ------------------------------------------------------------------------------------------------

@router.get("/network/products")
def products_page(ctx: CtxPage) -> Response:
    return _render(ctx, "network/products.html", products=api.list_products(ctx))


@router.post("/network/products")
def products_add(ctx: CtxPage, code: Text, name: Text, code3: Text = "", group: Text = "fuel") -> Response:
    api.add_product(ctx, api.ProductIn(code=code, name=name, code3=code3 or None, group=group))
    return redirect("/network/products")


@router.post("/network/products/{code}")
def products_edit(code: str, ctx: CtxPage, name: Text, code3: Text = "", group: Text = "fuel") -> Response:
    api.edit_product(ctx, code, api.ProductEdit(name=name, code3=code3 or None, group=group))
    return redirect("/network/products")


# -- prices --------------------------------------------------------------------------------------------------

@router.get("/network/prices")
def prices_page(ctx: CtxPage, station: str = "") -> Response:
    listed = api.price_list(ctx, station or None)
    return _render(ctx, "network/prices.html", p=listed, station=station, zones=_zones(ctx),
                   stations=api.list_stations(ctx), products=api.list_products(ctx))


@router.post("/network/prices")
def prices_schedule(ctx: CtxPage, station_id: Text, product_code: Text, price: Text,
                    effective_at: Text = "", back: Text = "") -> Response:
    zone = _zones(ctx).get(station_id, "UTC")
    api.schedule_price(ctx, api.PriceChangeIn(station_id=station_id, product_code=product_code,
                                              price_milli=parse_price(ctx, price),
                                              effective_at=parse_local(ctx, effective_at, zone)))
    return redirect(_back(back, station_id))


@router.post("/network/prices/{change_id}/cancel")
def prices_cancel(change_id: int, ctx: CtxPage, back: Text = "") -> Response:
    row = api.cancel_price(ctx, change_id)
    return redirect(_back(back, row.station_id))


def _back(back: str, station_id: str) -> str:
    """Where a price form came from: the station's page or the prices page (never another site)."""
    if back == "station":
        return f"/network/stations/{station_id}"
    return f"/network/prices?station={station_id}" if back == "prices-station" else "/network/prices"


# -- terminals -----------------------------------------------------------------------------------------------

@router.get("/network/terminals")
def terminals_page(ctx: CtxPage, station: str = "", revoked: str = "") -> Response:
    listed = terminals.list_terminals(ctx, station or None)
    shown = {t.id for t in listed.terminals}
    return _render(ctx, "network/terminals.html", tl=listed, station=station,
                   revoked=revoked if revoked in shown else "",
                   within=int(terminals.ONLINE_WITHIN.total_seconds() // 60))


@router.get("/network/terminals/{device_id}/events")
def terminal_events_page(device_id: str, ctx: CtxPage, severity: str = "", before: str = "") -> Response:
    cursor = int(before) if before.isdigit() and len(before) <= 12 else None
    listed = terminals.terminal_events(ctx, device_id, severity=severity or None, before=cursor)
    return _render(ctx, "network/terminal_events.html", ev=listed, codes=EVENT_CODES,
                   severities=device_alarms.SEVERITIES, paged=cursor is not None)


@router.post("/network/terminals/{device_id}/accept")
def terminal_accept(device_id: str, ctx: CtxPage) -> Response:
    terminals.accept(ctx, device_id)
    return redirect("/network/terminals")


@router.post("/network/terminals/{device_id}/revoke")
def terminal_revoke(device_id: str, ctx: CtxPage) -> Response:
    terminals.revoke(ctx, device_id)
    return redirect("/network/terminals?revoked=" + device_id)
