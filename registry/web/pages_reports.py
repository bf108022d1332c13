"""The report pages (issue 16): turnover with its form (period, station, product, customer, card, group by),
loyalty points per station, vouchers, terminals; each a table, a chart where one reads better, and the same
table as CSV and PDF (downloads). Rendered over registry.web.api_reports' endpoint functions, so a page
shows exactly what the API answers, within the same scope.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from markupsafe import Markup
from sqlalchemy import select
from starlette.responses import Response

from registry.charts import bar_chart, line_chart
from registry.models import Customer, Product, Station
from registry.pdfdoc import table_pdf
from registry.web import api_reports as api
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import BadInput, NotFound
from registry.web.render import litres, money, page
from registry.web.scope import station_ids

__all__ = ["Sheet", "router", "to_csv"]

router = APIRouter(include_in_schema=False)
CtxPage = Annotated[Ctx, Depends(page_ctx)]
MOST_BARS = 30                  # a chart shows the largest lines, the table all of them
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Sheet:
    """One report as a person reads it: the same on the page, in the CSV and in the PDF."""

    kind: str
    title: str
    subtitle: str
    header: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)          # columns aligned right (numbers)
    total: list[str] | None = None
    chart: tuple[list[str], list[int], str] | None = None  # labels, values, unit (registry.charts)
    chart_title: str = ""
    over_time: bool = False                                 # a line chart (per day), else bars


def _text(ctx: Ctx, asked: dict[str, str], name: str) -> str | None:
    value = asked.get(name, "").strip()
    return value or None


def _number(ctx: Ctx, asked: dict[str, str], name: str) -> int | None:
    value = _text(ctx, asked, name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise BadInput(ctx.t("reports.bad_number", field=ctx.t(f"reports.{name}")))
    return int(value)


def _date(ctx: Ctx, asked: dict[str, str], name: str) -> dt.date | None:
    value = _text(ctx, asked, name)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(ctx.t("reports.bad_date")) from None


def _ask(ctx: Ctx, request: Request) -> api.TurnoverAsk:
    asked = dict(request.query_params)
    return api.TurnoverAsk(start=_date(ctx, asked, "start"), end=_date(ctx, asked, "end"),
                           by=_text(ctx, asked, "by") or "station", station=_text(ctx, asked, "station"),
                           product=_text(ctx, asked, "product"), customer=_number(ctx, asked, "customer"),
                           card=_number(ctx, asked, "card"))


def _top(labels: list[str], values: list[int]) -> tuple[list[str], list[int]]:
    if len(values) <= MOST_BARS:
        return labels, values
    keep = sorted(range(len(values)), key=lambda i: -abs(values[i]))[:MOST_BARS]
    keep.sort()
    return [labels[i] for i in keep], [values[i] for i in keep]


def turnover_sheet(ctx: Ctx, report: api.TurnoverOut) -> Sheet:
    rows = [[x.label, str(x.sales), litres(x.volume_cl), money(x.amount_cents)] for x in report.lines]
    total = report.total
    labels, values = _top([x.label for x in report.lines], [x.amount_cents for x in report.lines])
    by_day = report.by == "day"
    return Sheet("turnover", ctx.t("reports.turnover_title", by=ctx.t(f"reports.by_{report.by}")),
                 ctx.t("reports.period", start=report.start.isoformat(), end=report.end.isoformat()),
                 [ctx.t(f"reports.by_{report.by}"), ctx.t("reports.sales"), ctx.t("reports.litres"),
                  ctx.t("reports.amount")], rows, {1, 2, 3},
                 [total.label, str(total.sales), litres(total.volume_cl), money(total.amount_cents)],
                 ([x.label for x in report.lines], [x.amount_cents for x in report.lines], "money") if by_day
                 else (labels, values, "money"), ctx.t("reports.amount"), by_day)


def loyalty_sheet(ctx: Ctx, report: api.LoyaltyOut) -> Sheet:
    rows = [[f"{x.station} ({x.station_id})", str(x.granted), str(x.taken_back), str(x.settled_points),
             money(x.settled_cents)] for x in report.stations]
    labels, values = _top([x.station for x in report.stations], [x.granted for x in report.stations])
    return Sheet("loyalty", ctx.t("reports.loyalty_title"),
                 ctx.t("reports.period", start=report.start.isoformat(), end=report.end.isoformat()),
                 [ctx.t("reports.by_station"), ctx.t("reports.points_granted"), ctx.t("reports.points_back"),
                  ctx.t("reports.points_settled"), ctx.t("reports.settled_amount")], rows, {1, 2, 3, 4},
                 None, (labels, values, "") if values else None, ctx.t("reports.points_granted"))


def vouchers_sheet(ctx: Ctx, report: api.VouchersOut) -> Sheet:
    names = {code: name for code, name in ctx.s.execute(select(Product.code, Product.name))}
    rows = [[names.get(x.product, x.product), str(x.issued), litres(x.issued_cl), str(x.redeemed),
             litres(x.redeemed_cl), str(x.voided)] for x in report.products]
    labels = [names.get(x.product, x.product) for x in report.products]
    return Sheet("vouchers", ctx.t("reports.vouchers_title"),
                 ctx.t("reports.period", start=report.start.isoformat(), end=report.end.isoformat()),
                 [ctx.t("reports.by_product"), ctx.t("reports.issued"), ctx.t("reports.litres"),
                  ctx.t("reports.redeemed"), ctx.t("reports.litres"), ctx.t("reports.voided")], rows,
                 {1, 2, 3, 4, 5}, None,
                 (labels, [x.redeemed_cl for x in report.products], "cl") if labels else None,
                 ctx.t("reports.redeemed_litres"))


def terminals_sheet(ctx: Ctx, report: api.TerminalsOut) -> Sheet:
    rows = [[x.device, x.station, ctx.t("reports.online") if x.online else ctx.t("reports.offline"),
             x.last_seen, x.software, x.config, str(x.backlog), str(x.oldest_unsent_s), str(x.missing)]
            for x in report.terminals]
    return Sheet("terminals", ctx.t("reports.terminals_title"),
                 ctx.t("reports.online_count", online=report.online, offline=report.offline),
                 [ctx.t("reports.terminal"), ctx.t("reports.by_station"), ctx.t("reports.link"),
                  ctx.t("reports.last_seen"), ctx.t("reports.software"), ctx.t("reports.config"),
                  ctx.t("reports.backlog"), ctx.t("reports.oldest_unsent"), ctx.t("reports.missing")],
                 rows, {6, 7, 8}, None,
                 ([ctx.t("reports.online"), ctx.t("reports.offline")], [report.online, report.offline], "")
                 if report.terminals else None, ctx.t("reports.terminals_title"))


def _cell(value: str, numeric: bool) -> str:
    """A text cell a spreadsheet would run as a formula is quoted (CSV injection); numbers stay."""
    return "'" + value if not numeric and value.startswith(_FORMULA) else value


def to_csv(sheet: Sheet) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_cell(h, False) for h in sheet.header])
    for row in [*sheet.rows, *([sheet.total] if sheet.total else [])]:
        writer.writerow([_cell(v, i in sheet.numeric) for i, v in enumerate(row)])
    return out.getvalue()


def _download(ctx: Ctx, body: bytes, kind: str, suffix: str, media: str) -> Response:
    name = f"{kind}-{ctx.now.date().isoformat()}.{suffix}"
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _svg(sheet: Sheet) -> Markup | None:
    if sheet.chart is None or not sheet.chart[0]:
        return None
    labels, values, unit = sheet.chart
    draw = line_chart if sheet.over_time else bar_chart
    return Markup(draw(sheet.chart_title, labels, values, unit))   # charts escape every text they draw


def _choices(ctx: Ctx) -> dict[str, Any]:
    """What the turnover form offers: the user's stations, products, customers (operators) and groupings."""
    allowed = station_ids(ctx)
    stations_q = select(Station.id, Station.name).order_by(Station.id)
    if allowed is not None and ctx.user.role == "station":
        stations_q = stations_q.where(Station.id.in_(sorted(allowed)))
    customers = [] if ctx.user.role != "operator" else \
        list(ctx.s.execute(select(Customer.id, Customer.name).order_by(Customer.name).limit(500)))
    by = api.STATION_BY if ctx.user.role == "station" else ("station", "pump", "product", "card", "customer",
                                                             "day")
    return {"stations": list(ctx.s.execute(stations_q)), "customers": customers, "by_options": by,
            "products": list(ctx.s.execute(select(Product.code, Product.name).order_by(Product.code)))}


Builder = Callable[[Ctx, Request], Sheet]


def _turnover(ctx: Ctx, request: Request) -> Sheet:
    return turnover_sheet(ctx, api.turnover_report(ctx, _ask(ctx, request)))


def _loyalty(ctx: Ctx, request: Request) -> Sheet:
    asked = dict(request.query_params)
    return loyalty_sheet(ctx, api.loyalty_report(ctx, _date(ctx, asked, "start"), _date(ctx, asked, "end")))


def _vouchers(ctx: Ctx, request: Request) -> Sheet:
    asked = dict(request.query_params)
    return vouchers_sheet(ctx, api.vouchers_report(ctx, _date(ctx, asked, "start"), _date(ctx, asked, "end")))


def _terminals(ctx: Ctx, request: Request) -> Sheet:
    return terminals_sheet(ctx, api.terminals_report(ctx))


SHEETS: dict[str, Builder] = {"turnover": _turnover, "loyalty": _loyalty, "vouchers": _vouchers,
                              "terminals": _terminals}


def _tabs(ctx: Ctx) -> list[str]:
    role = ctx.user.role
    return ["turnover"] if role == "fleet" else ["turnover", "loyalty", "terminals"] if role == "station" \
        else list(SHEETS)


def _show(ctx: Ctx, request: Request, kind: str) -> Response:
    sheet = SHEETS[kind](ctx, request)
    asked = dict(request.query_params)
    start, end = api.period(ctx, _date(ctx, asked, "start"), _date(ctx, asked, "end"))
    query = request.url.query
    return page(ctx, "reports/report.html", sheet=sheet, chart=_svg(sheet), kind=kind, tabs=_tabs(ctx),
                asked=asked, start=start.isoformat(), end=end.isoformat(),
                csv_url=f"/reports/{kind}.csv" + (f"?{query}" if query else ""),
                pdf_url=f"/reports/{kind}.pdf" + (f"?{query}" if query else ""),
                **(_choices(ctx) if kind == "turnover" else {}))


@router.get("/reports")
def turnover_page(ctx: CtxPage, request: Request) -> Response:
    return _show(ctx, request, "turnover")


@router.get("/reports/{kind}.csv")
def report_csv(ctx: CtxPage, request: Request, kind: str) -> Response:
    if kind not in SHEETS:
        raise NotFound("report")
    body = to_csv(SHEETS[kind](ctx, request)).encode("utf-8-sig")    # a BOM: spreadsheets read UTF-8
    return _download(ctx, body, kind, "csv", "text/csv; charset=utf-8")


@router.get("/reports/{kind}.pdf")
def report_pdf(ctx: CtxPage, request: Request, kind: str) -> Response:
    if kind not in SHEETS:
        raise NotFound("report")
    sheet = SHEETS[kind](ctx, request)
    rows = [*sheet.rows, *([sheet.total] if sheet.total else [])]
    chart = None
    if sheet.chart is not None and sheet.chart[0]:
        labels, values = _top(sheet.chart[0], sheet.chart[1])
        chart = (labels, values, sheet.chart[2])
    body = table_pdf(sheet.title, sheet.subtitle, sheet.header, rows, chart=chart)
    return _download(ctx, body, kind, "pdf", "application/pdf")


@router.get("/reports/{kind}")
def report_page(ctx: CtxPage, request: Request, kind: str) -> Response:
    if kind not in SHEETS or kind == "turnover":
        raise NotFound("report")
    return _show(ctx, request, kind)
