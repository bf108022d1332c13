"""A fleet customer's own data (role "fleet"): their accounts with wallets, balances and limits, their cards
(masked), blocking a card at once, changing a limit, the monthly statement as JSON, CSV and PDF.

LIMIT_RULES: a customer may lower any limit of their accounts and cards (to 0 too) and add one where none of
that period and unit is. They may raise a card's limit only up to their account's limit of the same period
and unit when the account has one (with none, not above what the network set). They never raise an account's
limit, which the network sets, and nobody clears one here: both are 403 Forbidden with a text saying so.

Every id goes through registry.web.scope: a card or an account of another customer is 404, exactly as one
that does not exist. The endpoint functions take a Ctx and return pydantic models; the API routes here return
them and registry.web.pages_fleet_customer renders the same functions as pages. Changes call the fleet
domain (registry.fleet.cards.move, registry.fleet.admin.set_limit), which audits them with the actor
"web:<login>". A blocked card joins the stop-list the registry republishes within --stop-list-poll seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.responses import Response

from registry.fleet import admin, cards
from registry.fleet.statement_pdf import StatementLabels, statement_pdf
from registry.fleet.statements import (
    AccountSummary,
    Statement,
    Subtotal,
    account_summary,
    statement,
    statement_csv,
)
from registry.fleet_models import Account, Card, Driver, Limit, Vehicle
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput, Forbidden
from registry.web.fleet_schemas import LimitOut
from registry.web.scope import account_for, card_for, customer_for
from registry.web.today import accounts_today

__all__ = ["BLOCKING", "AccountOut", "CardOut", "CustomerOut", "LimitIn", "LimitOut", "StatementOut",
           "WalletOut", "account_detail", "block_card", "card_detail", "month_span", "overview", "pdf_labels",
           "router", "set_card_or_account_limit", "statement_download", "statement_of", "statement_out"]

router = APIRouter()

BLOCKING = ("block", "lost", "stolen")          # what a customer may do to a card: each is final, stop-listed
MAX_DAYS = 366                                  # the longest statement period


class WalletOut(BaseModel):
    id: int
    name: str
    unit: str
    mode: str
    balance: int = Field(description="cents or centilitres, by unit")
    credit_limit: int
    available: int
    products: str
    stations: str
    expires_on: dt.date | None
    status: str


class CardOut(BaseModel):
    id: int
    masked: str
    status: str
    expiry: str = Field(description="YYMM")
    medium: str
    account_id: int
    vehicle: str
    driver: str
    limits: list[LimitOut]


class AccountOut(BaseModel):
    id: int
    name: str
    status: str
    timezone: str
    wallets: list[WalletOut]
    limits: list[LimitOut] = Field(description="the account's own limits (each card's are with the card)")
    cards: list[CardOut]


class CustomerOut(BaseModel):
    id: int
    name: str
    accounts: list[AccountOut]


class CardMoveIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class LimitIn(BaseModel):
    scope: Literal["account", "card"]
    scope_id: int
    period: Literal["sale", "day", "week", "month", "year", "lifetime"]
    unit: Literal["money", "volume", "count"]
    maximum: int = Field(ge=0, description="cents, centilitres or sales, by unit")
    reason: str = Field(default="", max_length=200)


class StatementRowOut(BaseModel):
    local_time: dt.datetime
    card: str
    vehicle: str
    driver: str
    station: str
    product: str
    volume_cl: int
    amount_cents: int
    odometer_km: int | None
    held: bool
    voided: bool = Field(default=False, description="voided by an operator: listed, not counted")


class SubtotalOut(BaseModel):
    label: str
    sales: int
    volume_cl: int
    amount_cents: int


class StatementOut(BaseModel):
    customer_id: int
    customer: str
    start: dt.date
    end: dt.date
    rows: list[StatementRowOut]
    by_card: list[SubtotalOut]
    by_vehicle: list[SubtotalOut]
    total: SubtotalOut


def _customer_id(ctx: Ctx) -> int:
    need(ctx, "fleet")
    return customer_for(ctx, ctx.user.customer_id or 0).id


def _limits(summary: AccountSummary, scope: str, scope_id: int) -> list[LimitOut]:
    return [LimitOut.model_validate(x, from_attributes=True)
            for x in summary.limits if x.scope == scope and x.scope_id == scope_id]


def _cards(ctx: Ctx, summary: AccountSummary, only: int | None = None) -> list[CardOut]:
    query = (select(Card, Vehicle.number, Driver.code).outerjoin(Vehicle, Vehicle.id == Card.vehicle_id)
             .outerjoin(Driver, Driver.id == Card.driver_id).where(Card.account_id == summary.id)
             .order_by(Card.id))
    if only is not None:
        query = query.where(Card.id == only)
    return [CardOut(id=c.id, masked=c.masked, status=c.status, expiry=c.expiry, medium=c.medium,
                    account_id=summary.id, vehicle=vehicle or "", driver=driver or "",
                    limits=_limits(summary, "card", c.id))
            for c, vehicle, driver in ctx.s.execute(query)]


def _account(ctx: Ctx, account: Account) -> AccountOut:
    summary = account_summary(ctx.s, account.id, ctx.now)
    return AccountOut(id=account.id, name=account.name, status=account.status, timezone=account.timezone,
                      wallets=[WalletOut.model_validate(w, from_attributes=True) for w in summary.wallets],
                      limits=_limits(summary, "account", account.id), cards=_cards(ctx, summary))


def overview(ctx: Ctx) -> CustomerOut:
    """The signed-in customer, every account of theirs with its wallets, limits and cards."""
    customer = customer_for(ctx, _customer_id(ctx))
    accounts = ctx.s.scalars(select(Account).where(Account.customer_id == customer.id).order_by(Account.id))
    return CustomerOut(id=customer.id, name=customer.name, accounts=[_account(ctx, a) for a in accounts])


def account_detail(ctx: Ctx, account_id: int) -> AccountOut:
    _customer_id(ctx)
    return _account(ctx, account_for(ctx, account_id))


def card_detail(ctx: Ctx, card_id: int) -> CardOut:
    _customer_id(ctx)
    card = card_for(ctx, card_id)
    account = account_for(ctx, card.account_id or 0)
    found = _cards(ctx, account_summary(ctx.s, account.id, ctx.now), only=card.id)
    return found[0]


def block_card(ctx: Ctx, card_id: int, action: str, reason: str) -> CardOut:
    """Block the card (or report it lost or stolen) at once: final, on the stop-list from now on."""
    _customer_id(ctx)
    card = card_for(ctx, card_id)
    if action not in BLOCKING:
        raise BadInput(f"a card's action is one of {', '.join(BLOCKING)}")
    cards.move(ctx.s, card.id, action, actor=ctx.actor, reason=reason, now=ctx.now)
    ctx.s.commit()
    return card_detail(ctx, card.id)


def _maximum(ctx: Ctx, scope: str, scope_id: int, period: str, unit: str) -> int | None:
    return ctx.s.scalar(select(Limit.maximum).where(Limit.scope == scope, Limit.scope_id == scope_id,
                                                    Limit.period == period, Limit.unit == unit))


def _shown(value: int, unit: str) -> str:
    return str(value) if unit == "count" else f"{value // 100}.{value % 100:02d}"


def set_card_or_account_limit(ctx: Ctx, change: LimitIn) -> LimitOut:
    """Set a limit on one of the customer's accounts or cards, within what the customer may do (LIMIT_RULES):
    any limit may be lowered and one added where there is none of that period and unit; an account's limit
    is never raised (Forbidden), a card's only up to the account's limit of the same period and unit (never,
    when the account has none)."""
    _customer_id(ctx)
    if change.scope == "card":
        account_id = card_for(ctx, change.scope_id).account_id or 0
    else:
        account_id = account_for(ctx, change.scope_id).id
    if change.maximum > admin.MAX_AMOUNT:
        raise BadInput(ctx.t("customer.too_large", most=_shown(admin.MAX_AMOUNT, change.unit)))
    before = _maximum(ctx, change.scope, change.scope_id, change.period, change.unit)
    if before is not None and change.maximum > before:
        if change.scope == "account":
            raise Forbidden(ctx.t("customer.no_raise_account", most=_shown(before, change.unit)))
        # without an account limit of that period and unit, the operator's card limit is the ceiling
        ceiling = _maximum(ctx, "account", account_id, change.period, change.unit)
        if ceiling is None or change.maximum > ceiling:
            most = before if ceiling is None else max(before, ceiling)
            raise Forbidden(ctx.t("customer.no_raise_card", most=_shown(most, change.unit)))
    admin.set_limit(ctx.s, change.scope, change.scope_id, change.period, change.unit, change.maximum,
                    actor=ctx.actor, now=ctx.now, reason=change.reason)
    ctx.s.commit()
    summary = account_summary(ctx.s, account_id, ctx.now)
    return next(x for x in _limits(summary, change.scope, change.scope_id)
                if (x.period, x.unit) == (change.period, change.unit))


def month_span(month: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """"YYYY-MM" (or "" for this month) as its first and last day."""
    if not month:
        month = f"{today:%Y-%m}"
    try:
        first = dt.date.fromisoformat(month + "-01")
    except ValueError:
        raise BadInput("a month is written YYYY-MM") from None
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first, following - dt.timedelta(days=1)


def statement_of(ctx: Ctx, month: str = "", start: dt.date | None = None,
                 end: dt.date | None = None) -> Statement:
    """The customer's statement of a month, or from `start` to `end` (local dates, both included)."""
    customer_id = _customer_id(ctx)
    first, last = month_span(month, accounts_today(ctx, customer_id))
    start, end = start or first, end or (last if start is None else start)
    if end < start or (end - start).days >= MAX_DAYS:
        raise BadInput(f"a statement covers 1 to {MAX_DAYS} days, its end on or after its start")
    return statement(ctx.s, customer_id, start, end)


def _by_label(subtotals: dict[str, Subtotal]) -> list[Subtotal]:
    return sorted(subtotals.values(), key=lambda t: t.label)


def statement_out(st: Statement) -> StatementOut:
    return StatementOut.model_validate({
        "customer_id": st.customer_id, "customer": st.customer, "start": st.start, "end": st.end,
        "rows": st.rows, "by_card": _by_label(st.by_card), "by_vehicle": _by_label(st.by_vehicle),
        "total": st.total}, from_attributes=True)


def pdf_labels(ctx: Ctx) -> StatementLabels:
    """The statement PDF's words in the reader's language."""
    t = ctx.t
    return StatementLabels(
        title=t("customer.pdf_title"), period=t("customer.pdf_period"), totals=t("customer.pdf_totals"),
        columns=(t("customer.col_date"), t("customer.col_card"), t("customer.col_vehicle"),
                 t("customer.col_driver"), t("customer.col_station"), t("customer.col_product"),
                 t("customer.col_litres"), t("customer.col_amount"), t("customer.col_odometer"),
                 t("customer.col_held")),
        held=t("customer.held"), voided=t("customer.voided"), per_card=t("customer.per_card"),
        per_vehicle=t("customer.per_vehicle"),
        card=t("customer.col_card"), vehicle=t("customer.col_vehicle"), sales=t("customer.col_sales"),
        litres=t("customer.col_litres"), amount=t("customer.col_amount"), total=t("customer.total"),
        no_vehicle=t("customer.no_vehicle"))


def statement_download(ctx: Ctx, kind: str, month: str = "", start: dt.date | None = None,
                       end: dt.date | None = None) -> Response:
    """The statement as a file to save: "csv" (the registry's statement CSV) or "pdf"."""
    st = statement_of(ctx, month, start, end)
    name = f"statement-{st.customer_id}-{st.start:%Y%m%d}-{st.end:%Y%m%d}.{kind}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if kind == "csv":
        return Response(statement_csv(st), media_type="text/csv; charset=utf-8", headers=disposition)
    if kind == "pdf":
        return Response(statement_pdf(st, pdf_labels(ctx)), media_type="application/pdf", headers=disposition)
    raise BadInput("a statement downloads as csv or pdf")


Context = Annotated[Ctx, Depends(api_ctx)]
Month = Annotated[str, Query(pattern=r"^(\d{4}-\d{2})?$", description="YYYY-MM; empty: this month")]


@router.get("/api/customer", response_model=CustomerOut, tags=["customer"])
def api_overview(ctx: Context) -> CustomerOut:
    return overview(ctx)


@router.get("/api/customer/accounts/{account_id}", response_model=AccountOut, tags=["customer"])
def api_account(account_id: int, ctx: Context) -> AccountOut:
    return account_detail(ctx, account_id)


@router.get("/api/customer/cards/{card_id}", response_model=CardOut, tags=["customer"])
def api_card(card_id: int, ctx: Context) -> CardOut:
    return card_detail(ctx, card_id)


@router.post("/api/customer/cards/{card_id}/{action}", response_model=CardOut, tags=["customer"])
def api_block(card_id: int, action: Literal["block", "lost", "stolen"], body: CardMoveIn,
              ctx: Context) -> CardOut:
    return block_card(ctx, card_id, action, body.reason)


@router.put("/api/customer/limits", response_model=LimitOut, tags=["customer"])
def api_limit(body: LimitIn, ctx: Context) -> LimitOut:
    return set_card_or_account_limit(ctx, body)


@router.get("/api/customer/statement", response_model=StatementOut, tags=["customer"])
def api_statement(ctx: Context, month: Month = "", start: dt.date | None = None,
                  end: dt.date | None = None) -> StatementOut:
    return statement_out(statement_of(ctx, month, start, end))


@router.get("/api/customer/statement.{kind}", tags=["customer"], response_class=Response,
            responses={200: {"content": {"text/csv": {}, "application/pdf": {}},
                             "description": "the statement as a file (attachment)"}})
def api_statement_file(kind: Literal["csv", "pdf"], ctx: Context, month: Month = "",
                       start: dt.date | None = None, end: dt.date | None = None) -> Response:
    return statement_download(ctx, kind, month, start, end)
