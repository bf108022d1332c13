"""A fleet customer's pages (role "fleet"): /customer (accounts, wallets, limits, cards), an account's and a
card's page with their limit forms, blocking a card, and /customer/statement with its charts and the CSV and
PDF downloads. Each renders or calls the endpoint functions of registry.web.api_fleet_customer, so the pages
show exactly what the API answers and go through the same scope checks."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from markupsafe import Markup
from starlette.responses import Response

from registry.charts import bar_chart, line_chart
from registry.fleet.statements import Statement
from registry.web import api_fleet_customer as api
from registry.web.deps import Ctx, page_ctx
from registry.web.errors import BadInput
from registry.web.render import page, redirect

__all__ = ["parse_maximum", "router"]

router = APIRouter()

PERIODS = ("sale", "day", "week", "month", "year", "lifetime")
UNITS = ("money", "volume", "count")
DONE = ("block", "lost", "stolen", "limit")
_DECIMAL = re.compile(r"([0-9]{1,10})(?:[.,]([0-9]{1,2}))?", re.ASCII)
_COUNT = re.compile(r"[0-9]{1,9}", re.ASCII)

Context = Annotated[Ctx, Depends(page_ctx)]
Month = Annotated[str, Query(pattern=r"^(\d{4}-\d{2})?$")]


def parse_maximum(ctx: Ctx, text: str, unit: str) -> int:
    """A limit keyed in: "80", "80.5" or "80,50" in money or litres (as cents or centilitres), a whole
    number of sales for "count"."""
    text = text.strip().replace(" ", "")
    if unit == "count":
        if _COUNT.fullmatch(text):
            return int(text)
    else:
        found = _DECIMAL.fullmatch(text)
        if found:
            return int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
    raise BadInput(ctx.t("customer.bad_maximum"))


def _done(done: str) -> str:
    return done if done in DONE else ""


@router.get("/customer", include_in_schema=False)
def customer_page(ctx: Context, done: str = "") -> Response:
    return page(ctx, "customer/index.html", data=api.overview(ctx), done=_done(done))


@router.get("/customer/accounts/{account_id}", include_in_schema=False)
def account_page(account_id: int, ctx: Context, done: str = "") -> Response:
    return page(ctx, "customer/account.html", account=api.account_detail(ctx, account_id), periods=PERIODS,
                units=UNITS, done=_done(done))


@router.get("/customer/cards/{card_id}", include_in_schema=False)
def card_page(card_id: int, ctx: Context, done: str = "") -> Response:
    card = api.card_detail(ctx, card_id)
    return page(ctx, "customer/card.html", card=card, account=api.account_detail(ctx, card.account_id),
                periods=PERIODS, units=UNITS, blocking=api.BLOCKING, done=_done(done))


@router.post("/customer/cards/{card_id}/block", include_in_schema=False)
def card_block(card_id: int, ctx: Context, reason: Annotated[str, Form()],
               action: Annotated[str, Form()] = "block") -> Response:
    api.block_card(ctx, card_id, action, reason)
    return redirect(f"/customer/cards/{card_id}?done={action}")


@router.post("/customer/limits", include_in_schema=False)
def limit_set(ctx: Context, scope: Annotated[str, Form()], scope_id: Annotated[int, Form()],
              period: Annotated[str, Form()], unit: Annotated[str, Form()], maximum: Annotated[str, Form()],
              reason: Annotated[str, Form()] = "") -> Response:
    if scope not in ("account", "card") or period not in PERIODS or unit not in UNITS:
        raise BadInput(ctx.t("customer.bad_limit"))
    value = parse_maximum(ctx, maximum, unit)
    change = api.LimitIn.model_validate({"scope": scope, "scope_id": scope_id, "period": period, "unit": unit,
                                         "maximum": value, "reason": reason[:200]})
    api.set_card_or_account_limit(ctx, change)
    back = "cards" if scope == "card" else "accounts"
    return redirect(f"/customer/{back}/{scope_id}?done=limit")


def _charts(ctx: Ctx, st: Statement) -> list[Markup]:
    """The amount per card and the litres per day of the period (held sales left out, as in the totals)."""
    cards = sorted(st.by_card.values(), key=lambda t: t.label)
    days: dict[dt.date, int] = {}
    day = st.start
    while day <= st.end and len(days) < 62:
        days[day] = 0
        day += dt.timedelta(days=1)
    for row in st.rows:
        if not row.held and row.local_time.date() in days:
            days[row.local_time.date()] += row.volume_cl
    return [Markup(bar_chart(ctx.t("customer.chart_per_card"), [c.label for c in cards],
                             [c.amount_cents for c in cards], "money")),
            Markup(line_chart(ctx.t("customer.chart_per_day"), [f"{d:%m-%d}" for d in days],
                              list(days.values()), "volume"))]


@router.get("/customer/statement", include_in_schema=False)
def statement_page(ctx: Context, month: Month = "") -> Response:
    st = api.statement_of(ctx, month)
    shown = f"{st.start:%Y-%m}"
    return page(ctx, "customer/statement.html", st=api.statement_out(st), month=shown,
                charts=_charts(ctx, st) if st.rows else [])


@router.get("/customer/statement.csv", include_in_schema=False)
def statement_csv_file(ctx: Context, month: Month = "") -> Response:
    return api.statement_download(ctx, "csv", month)


@router.get("/customer/statement.pdf", include_in_schema=False)
def statement_pdf_file(ctx: Context, month: Month = "") -> Response:
    return api.statement_download(ctx, "pdf", month)
