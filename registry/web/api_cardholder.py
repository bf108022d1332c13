"""The cardholder's points: balance, tier, their cards (masked) and the last 30 movements of the points.

Only the signed-in cardholder's own loyalty account (ctx.user.account_id, through registry.web.scope) is
ever read; the route takes no id. The movements are the terminal's (registry.loyalty.history.card_history),
read by one of the account's cards: an active loyalty card, else a linked card. An account with neither
shows its balance and no movements; a pooled account shows neither (its points are the pool's).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.loyalty import admin
from registry.loyalty.history import HISTORY_SIZE, Line, card_history
from registry.models import Card, LoyaltyLink, LoyaltyMember, Station
from registry.web import scope
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import NotFound

__all__ = ["CardOut", "MovementOut", "PointsOut", "my_points", "router"]

router = APIRouter()


class CardOut(BaseModel):
    masked: str
    status: str


class MovementOut(BaseModel):
    date: dt.date                   # the account's time zone
    time: dt.time
    station: str                    # its id; "" for an expiry, a pool transfer, a correction
    station_name: str
    points: int                     # signed
    kind: str                       # earn redeem expiry reversal transfer_in transfer_out correction


class PointsOut(BaseModel):
    name: str
    tier: str
    pooled: bool
    balance: int | None             # None when pooled
    cards: list[CardOut]
    links: list[str]                # masked numbers of fleet or bank cards earning on the account
    movements: list[MovementOut]


def _reading_token(s: Session, account_id: int) -> str | None:
    """A token card_history reads the account by: its first active loyalty card, else a linked card."""
    token = s.scalar(select(Card.token).where(Card.account_id == account_id, Card.status == "active")
                     .order_by(Card.id).limit(1))
    if token is None:
        token = s.scalar(select(LoyaltyLink.token).where(LoyaltyLink.account_id == account_id)
                         .order_by(LoyaltyLink.created_at).limit(1))
    return token


def my_points(ctx: Ctx) -> PointsOut:
    need(ctx, "cardholder")
    if ctx.user.account_id is None:
        raise NotFound("account")
    account = scope.account_for(ctx, ctx.user.account_id)
    member = ctx.s.get(LoyaltyMember, account.id)
    if account.kind != "loyalty" or member is None:
        raise NotFound("account")
    view = admin.show(ctx.s, account.id)
    pooled = member.pool_account_id not in (None, account.id)
    balance: int | None = None if pooled else view.balance
    lines: tuple[Line, ...] = ()
    token = None if pooled else _reading_token(ctx.s, account.id)
    if token is not None:
        history = card_history(ctx.s, token, limit=HISTORY_SIZE)
        balance, lines = history.balance, history.lines
    names = {sid: name for sid, name in ctx.s.execute(
        select(Station.id, Station.name).where(Station.id.in_({x.station for x in lines if x.station})))}
    return PointsOut(
        name=view.name, tier=view.tier, pooled=pooled, balance=balance,
        cards=[CardOut(masked=masked, status=status) for _, masked, status in view.cards],
        links=list(view.links),
        movements=[MovementOut(date=x.date, time=x.time, station=x.station,
                               station_name=names.get(x.station, ""), points=x.points, kind=x.kind)
                   for x in lines])


@router.get("/api/cardholder/points", response_model=PointsOut, tags=["cardholder"])
def api_points(ctx: Annotated[Ctx, Depends(api_ctx)]) -> PointsOut:
    """The signed-in cardholder's points balance, tier, cards (masked) and last 30 movements."""
    return my_points(ctx)
