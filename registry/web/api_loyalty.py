"""The operators' loyalty back office as JSON, and the endpoint functions its pages render: earn rules,
promotions, tiers and settings (registry.loyalty.admin), rewards and their stock (registry.loyalty.rewards),
vouchers (registry.vouchers) and attendants (registry.attendants). Every change is the domain's, audited
with the web user as actor. A voucher's code is answered once, by the issue; an attendant's PIN and card
number go in and never come back out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, TypeVar

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from registry import attendants as attendant_admin
from registry import vouchers as voucher_admin
from registry.fleet.admin import get
from registry.keys import RegistryKeys
from registry.loyalty import admin, rewards
from registry.loyalty import settings as loyalty_settings
from registry.models import Attendant, EarnRule, Promotion, Reward, RewardStock, Tier
from registry.web import scope
from registry.web.deps import Ctx, api_ctx, need
from registry.web.errors import BadInput

__all__ = ["AttendantIn", "AttendantOut", "CardIn", "IssueIn", "IssuedOut", "PinIn", "ProgrammeOut",
           "PromoIn", "PromoOut", "RewardIn", "RewardOut", "RuleIn", "RuleOut", "SettingOut", "StockIn",
           "TierIn", "TierOut", "VoucherOut", "add_attendant", "add_promotion", "add_reward", "add_rule",
           "attendant_card", "attendant_pin", "attendant_state", "end_promotion", "end_rule",
           "issue_vouchers", "list_attendants", "list_rewards", "list_vouchers", "price_reward", "programme",
           "router", "set_setting", "set_stock", "set_tier", "void_voucher", "withdraw_reward"]

router = APIRouter()
Api = Annotated[Ctx, Depends(api_ctx)]      # the routes below are also called by the pages with theirs
Reason = Annotated[str, Body(embed=True, description="why (the audit keeps it)")]
LastDay = Annotated[dt.date, Body(embed=True, description="the last day it applies")]
M = TypeVar("M", bound=BaseModel)



class RuleIn(BaseModel):
    product: str = Field(description="a product code, group:NAME or *")
    basis: str = Field(description="volume (per litre) or money (per currency unit)")
    milli_points: int = Field(description="thousandths of a point: 1500 is 1.5 points")
    starts_on: dt.date | None = None
    ends_on: dt.date | None = None


class RuleOut(RuleIn):
    id: int


class PromoIn(BaseModel):
    name: str
    position: int = Field(description="lower applies first")
    product: str = "*"
    stations: str = Field("", description="station ids and group:NAME, comma-separated; empty: every one")
    starts_on: dt.date
    ends_on: dt.date
    multiplier_pct: int = 100
    bonus_points: int = 0
    stop: bool = False


class PromoOut(PromoIn):
    id: int
    status: str


class TierIn(BaseModel):
    rank: int
    multiplier_pct: int
    min_spend_cents: int


class TierOut(TierIn):
    name: str


class SettingOut(BaseModel):
    key: str
    value: int
    default: int
    low: int
    high: int


class ProgrammeOut(BaseModel):
    rules: list[RuleOut]
    promotions: list[PromoOut]
    tiers: list[TierOut]
    settings: list[SettingOut]


def _keys(ctx: Ctx) -> RegistryKeys:
    if ctx.keys is None:
        raise BadInput("the registry's keys are not loaded (start the back office with the registry's "
                       "state directory)")
    return ctx.keys


def _out(model: type[M], row: object) -> M:
    return model.model_validate(row, from_attributes=True)


def _settings(ctx: Ctx) -> list[SettingOut]:
    now = dataclasses.asdict(loyalty_settings.load(ctx.s))
    low_high = loyalty_settings.RANGES
    return [SettingOut(key=k, value=v, default=loyalty_settings.DEFAULTS[k], low=low_high[k][0],
                       high=low_high[k][1]) for k, v in now.items()]


@router.get("/api/loyalty/programme", tags=["loyalty"])
def programme(ctx: Api) -> ProgrammeOut:
    need(ctx, "operator")
    s = ctx.s
    return ProgrammeOut(
        rules=[_out(RuleOut, r) for r in s.scalars(select(EarnRule).order_by(EarnRule.id))],
        promotions=[_out(PromoOut, p) for p in s.scalars(select(Promotion).order_by(Promotion.position,
                                                                              Promotion.id))],
        tiers=[_out(TierOut, t) for t in s.scalars(select(Tier).order_by(Tier.rank))],
        settings=_settings(ctx))


@router.post("/api/loyalty/rules", tags=["loyalty"])
def add_rule(ctx: Api, body: RuleIn) -> RuleOut:
    need(ctx, "operator")
    row = admin.add_rule(ctx.s, body.product, body.basis, body.milli_points, starts_on=body.starts_on,
                         ends_on=body.ends_on, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(RuleOut, row)


@router.post("/api/loyalty/rules/{rule_id}/end", tags=["loyalty"])
def end_rule(ctx: Api, rule_id: int, on: LastDay) -> RuleOut:
    need(ctx, "operator")
    row = admin.end_rule(ctx.s, rule_id, on=on, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(RuleOut, row)


@router.post("/api/loyalty/promotions", tags=["loyalty"])
def add_promotion(ctx: Api, body: PromoIn) -> PromoOut:
    need(ctx, "operator")
    row = admin.add_promotion(ctx.s, body.name, position=body.position, product=body.product,
                              stations=body.stations, starts_on=body.starts_on, ends_on=body.ends_on,
                              multiplier_pct=body.multiplier_pct, bonus_points=body.bonus_points,
                              stop=body.stop, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(PromoOut, row)


@router.post("/api/loyalty/promotions/{promo_id}/end", tags=["loyalty"])
def end_promotion(ctx: Api, promo_id: int, on: LastDay) -> PromoOut:
    need(ctx, "operator")
    row = admin.end_promotion(ctx.s, promo_id, on=on, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(PromoOut, row)


@router.put("/api/loyalty/tiers/{name}", tags=["loyalty"])
def set_tier(ctx: Api, name: str, body: TierIn) -> TierOut:
    need(ctx, "operator")
    row = admin.set_tier(ctx.s, name, rank=body.rank, multiplier_pct=body.multiplier_pct,
                         min_spend_cents=body.min_spend_cents, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(TierOut, row)


@router.put("/api/loyalty/settings/{key}", tags=["loyalty"])
def set_setting(ctx: Api, key: str, value: Annotated[int, Body(embed=True)]) -> SettingOut:
    need(ctx, "operator")
    admin.set_setting(ctx.s, key, value, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return next(x for x in _settings(ctx) if x.key == key)



class RewardIn(BaseModel):
    name: str
    points: int


class RewardOut(RewardIn):
    id: int
    status: str
    stock: dict[str, int] = Field(description="station id: how many it holds")


class StockIn(BaseModel):
    """Either `quantity` (after a count) or `delta` (goods in, +, or out, -, with a reason)."""

    quantity: int | None = None
    delta: int | None = None
    reason: str = ""


def _reward(ctx: Ctx, row: Reward) -> RewardOut:
    stock = {x.station_id: x.quantity for x in ctx.s.scalars(
        select(RewardStock).where(RewardStock.reward_id == row.id).order_by(RewardStock.station_id))}
    return RewardOut(id=row.id, name=row.name, points=row.points, status=row.status, stock=stock)


@router.get("/api/loyalty/rewards", tags=["rewards"])
def list_rewards(ctx: Api) -> list[RewardOut]:
    need(ctx, "operator")
    return [_reward(ctx, r) for r in ctx.s.scalars(select(Reward).order_by(Reward.id))]


@router.post("/api/loyalty/rewards", tags=["rewards"])
def add_reward(ctx: Api, body: RewardIn) -> RewardOut:
    need(ctx, "operator")
    row = rewards.add_reward(ctx.s, body.name, body.points, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _reward(ctx, row)


@router.post("/api/loyalty/rewards/{reward_id}/price", tags=["rewards"])
def price_reward(ctx: Api, reward_id: int, points: Annotated[int, Body(embed=True)]) -> RewardOut:
    need(ctx, "operator")
    row = rewards.set_price(ctx.s, reward_id, points, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _reward(ctx, row)


@router.post("/api/loyalty/rewards/{reward_id}/withdraw", tags=["rewards"])
def withdraw_reward(ctx: Api, reward_id: int, reason: Reason = "") -> RewardOut:
    need(ctx, "operator")
    row = rewards.withdraw(ctx.s, reward_id, reason=reason, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _reward(ctx, row)


@router.put("/api/loyalty/rewards/{reward_id}/stock/{station_id}", tags=["rewards"])
def set_stock(ctx: Api, reward_id: int, station_id: str, body: StockIn) -> RewardOut:
    need(ctx, "operator")
    station = scope.station_for(ctx, station_id)
    if (body.quantity is None) == (body.delta is None):
        raise BadInput("give either a quantity (after a count) or a delta (goods in or out)")
    if body.quantity is not None:
        rewards.set_stock(ctx.s, reward_id, station.id, body.quantity, actor=ctx.actor, now=ctx.now)
    elif body.delta is not None:
        rewards.adjust_stock(ctx.s, reward_id, station.id, body.delta, reason=body.reason, actor=ctx.actor,
                             now=ctx.now)
    ctx.s.commit()
    return _reward(ctx, get(ctx.s, Reward, reward_id, "reward"))



class VoucherOut(BaseModel):
    id: int
    code_hint: str = Field(description="the code's last four digits")
    product: str
    volume_cl: int
    status: str
    batch: str
    issued_at: dt.datetime
    expires_on: dt.date | None
    redeemed_at: dt.datetime | None
    terminal: str | None


class IssueIn(BaseModel):
    product: str
    volume_cl: int
    count: int = 1
    expires_on: dt.date | None = None
    batch: str = ""


class IssuedCode(BaseModel):
    id: int
    code: str = Field(description="19 digits; answered this once and never again")


class IssuedOut(BaseModel):
    product: str
    volume_cl: int
    expires_on: dt.date | None
    batch: str
    vouchers: list[IssuedCode]


@router.get("/api/loyalty/vouchers", tags=["vouchers"])
def list_vouchers(ctx: Api, hint: str = "", batch: str = "", status: str = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[VoucherOut]:
    need(ctx, "operator")
    found = voucher_admin.find(ctx.s, hint=hint or None, batch=batch or None, status=status or None,
                               limit=max(1, min(limit, 1000)))
    return [_out(VoucherOut, v) for v in found]


@router.post("/api/loyalty/vouchers", tags=["vouchers"])
def issue_vouchers(ctx: Api, body: IssueIn) -> IssuedOut:
    """Issue vouchers: this answer is the only place their codes ever appear (never stored, never logged)."""
    need(ctx, "operator")
    made = voucher_admin.issue(ctx.s, _keys(ctx), product=body.product, volume_cl=body.volume_cl,
                               count=body.count, expires_on=body.expires_on, batch=body.batch, now=ctx.now,
                               actor=ctx.actor)
    ctx.s.commit()
    return IssuedOut(product=body.product, volume_cl=body.volume_cl, expires_on=body.expires_on,
                     batch=body.batch, vouchers=[IssuedCode(id=v.voucher_id, code=v.code) for v in made])


@router.post("/api/loyalty/vouchers/{voucher_id}/void", tags=["vouchers"])
def void_voucher(ctx: Api, voucher_id: int, reason: Reason = "") -> VoucherOut:
    need(ctx, "operator")
    row = voucher_admin.void(ctx.s, voucher_id, reason=reason, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _out(VoucherOut, row)



class AttendantIn(BaseModel):
    id: str
    name: str
    role: str = "attendant"
    stations: str = Field("", description="station ids, comma-separated; empty: any station")


class AttendantOut(AttendantIn):
    status: str
    card: bool = Field(description="whether a card is set (its number is never answered)")
    pin: bool = Field(description="whether a PIN is set (never answered)")
    failed_tries: int


class PinIn(BaseModel):
    pin: str = Field(repr=False)
    again: str = Field(repr=False)


class CardIn(BaseModel):
    number: str = Field(repr=False)
    medium: str = "chip"


def _attendant(row: Attendant) -> AttendantOut:
    return AttendantOut(id=row.id, name=row.name, role=row.role, stations=row.stations, status=row.status,
                        card=bool(row.card_token), pin=attendant_admin.has_pin(row),
                        failed_tries=row.failed_tries)


@router.get("/api/loyalty/attendants", tags=["attendants"])
def list_attendants(ctx: Api, station: str = "", status: str = "") -> list[AttendantOut]:
    need(ctx, "operator")
    query = select(Attendant).order_by(Attendant.id)
    if status:
        query = query.where(Attendant.status == status)
    return [_attendant(a) for a in ctx.s.scalars(query)
            if not station or not a.stations or station in a.stations.split(",")]


@router.post("/api/loyalty/attendants", tags=["attendants"])
def add_attendant(ctx: Api, body: AttendantIn) -> AttendantOut:
    need(ctx, "operator")
    row = attendant_admin.add(ctx.s, body.id.strip(), body.name, role=body.role, stations=body.stations,
                              actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _attendant(row)


@router.post("/api/loyalty/attendants/{attendant_id}/pin", tags=["attendants"])
def attendant_pin(ctx: Api, attendant_id: str, body: PinIn) -> AttendantOut:
    """A new PIN, typed twice; kept only as its verifier, in no answer, log or audit entry."""
    need(ctx, "operator")
    if body.pin != body.again:
        raise BadInput("the two PINs differ")
    attendant_admin.set_pin(ctx.s, attendant_id, body.pin, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _attendant(get(ctx.s, Attendant, attendant_id, "attendant"))


@router.post("/api/loyalty/attendants/{attendant_id}/card", tags=["attendants"])
def attendant_card(ctx: Api, attendant_id: str, body: CardIn) -> AttendantOut:
    """Give the attendant a card (replacing theirs): its number is never answered, only that one is set."""
    need(ctx, "operator")
    attendant_admin.set_card(ctx.s, _keys(ctx), attendant_id, body.number, medium=body.medium,
                             actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _attendant(get(ctx.s, Attendant, attendant_id, "attendant"))


@router.post("/api/loyalty/attendants/{attendant_id}/{action}", tags=["attendants"])
def attendant_state(ctx: Api, attendant_id: str, action: str, reason: Reason = "") -> AttendantOut:
    """lock, unlock or withdraw, with a reason."""
    need(ctx, "operator")
    move = {"lock": attendant_admin.lock, "unlock": attendant_admin.unlock,
            "withdraw": attendant_admin.withdraw}.get(action)
    if move is None:
        raise BadInput("an action is lock, unlock or withdraw")
    row = move(ctx.s, attendant_id, reason=reason, actor=ctx.actor, now=ctx.now)
    ctx.s.commit()
    return _attendant(row)
