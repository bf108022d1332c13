"""The rewards catalogue, its stock per station, and rewards redeemed for points (issue 15).

A reward is handed over at once (one of the station's stock) or ordered: a pending order waits for the
weekly list (`consolidate_week`), which takes it once. Redeeming spends the account's points under
"redeem:{key}" (registry.loyalty.points, oldest awards first); returning an order gives them back. A pooled
member account neither sees nor redeems points. Operator changes are audited; nothing commits here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, ForecourtError
from registry.fleet import ledger
from registry.fleet.admin import audit, get
from registry.loyalty import points
from registry.models import (
    Account,
    Attendant,
    Card,
    LoyaltyFlag,
    LoyaltyLink,
    LoyaltyMember,
    Movement,
    Reward,
    RewardOrder,
    RewardStock,
    Station,
)

__all__ = ["MAX_POINTS", "REDEEM", "RewardError", "WeekLine", "add_reward", "adjust_stock", "attendant_actor",
           "consolidate_week", "deliver", "flag_own_card", "loyalty_account", "orders",
           "redeem", "return_order", "set_price", "set_stock", "week_bounds", "withdraw"]

REDEEM = "redeem:"
KEY_SIZE = ledger.KEY_LENGTH - len(ledger.REVERSAL) - len(REDEEM)   # its reversal's key fits too
MAX_POINTS = 10**9                      # far above any reward's price, far inside BIGINT
MAX_STOCK = 10**6
HANDED = ("handed_over", "delivered")   # orders whose goods are (or were) at the station
_WEEK = re.compile(r"W([0-9]{4})-([0-9]{2})", re.ASCII)
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


class RewardError(ForecourtError):
    """A redemption, return or conversion refused: not enough points, out of stock, a pooled account..."""


@dataclass(frozen=True)
class WeekLine:
    """One line of a weekly order list: how many of a reward a station gets, and the orders it serves."""

    station_id: str
    reward_id: int
    reward: str
    quantity: int
    orders: tuple[int, ...]


def _points(value: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_POINTS:
        raise ConfigError(f"{key} must be a whole number of points from 1 to {MAX_POINTS}", key=key)
    return value


def _key(key: str, prefix: str) -> str:
    if not key or len(key) > KEY_SIZE or not key.isprintable():
        raise ConfigError(f"request key must be 1 to {KEY_SIZE} printable characters", key="key")
    return prefix + key


def attendant_actor(s: Session, attendant: str) -> str:
    """The audit actor of an attendant's action ("attendant:ID"); an unknown or inactive one is refused."""
    if not attendant:
        return "registry"
    found = s.get(Attendant, attendant)
    if found is None:
        raise ConfigError("unknown attendant", attendant=attendant)
    if found.status != "active":
        raise RewardError("the attendant is not active", attendant=attendant, status=found.status)
    return f"attendant:{attendant}"


def loyalty_account(s: Session, account_id: int) -> Account:
    """An active loyalty account that may spend its points (not a member pooled into another)."""
    account = get(s, Account, account_id, "account")
    if account.kind != "loyalty":
        raise ConfigError("not a loyalty account", account=account_id, kind=account.kind)
    if account.status != "active":
        raise RewardError("the loyalty account is closed", account=account_id)
    member = s.get(LoyaltyMember, account_id)
    if member is not None and member.pool_account_id is not None:
        raise RewardError("the account's points are pooled: they are redeemed on the pool account",
                          account=account_id, pool=member.pool_account_id)
    return account


def flag_own_card(s: Session, account_ids: Iterable[int], attendant: str, *, now: dt.datetime,
                  detail: str) -> LoyaltyFlag | None:
    """Flag "own_card" when the attendant's own card is one of the accounts' cards or linked to one of them
    (the action is done all the same; the flag names the first account); None when it is not."""
    ids = list(dict.fromkeys(account_ids))
    token = s.scalar(select(Attendant.card_token).where(Attendant.id == attendant)) if attendant else None
    if not token or not ids:
        return None
    on_card = s.scalar(select(func.count()).select_from(Card)
                       .where(Card.token == token, Card.account_id.in_(ids)))
    linked = s.scalar(select(func.count()).select_from(LoyaltyLink)
                      .where(LoyaltyLink.token == token, LoyaltyLink.account_id.in_(ids)))
    if not on_card and not linked:
        return None
    flag = LoyaltyFlag(kind="own_card", account_id=ids[0], attendant_id=attendant, at=now,
                       detail=detail[:200])
    s.add(flag)
    s.flush()
    return flag


# -- the catalogue -------------------------------------------------------------------------------------------

def add_reward(s: Session, name: str, price: int, *, actor: str, now: dt.datetime) -> Reward:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ConfigError("reward name must be 1 to 100 characters without control characters", key="name")
    reward = Reward(name=name, points=_points(price, "points"), status="active")
    s.add(reward)
    s.flush()
    audit(s, actor=actor, action="reward.add", subject=f"reward:{reward.id}", now=now, name=name,
          points=price)
    return reward


def _active_reward(s: Session, reward_id: int) -> Reward:
    reward = get(s, Reward, reward_id, "reward")
    if reward.status != "active":
        raise RewardError("the reward is withdrawn", reward=reward_id)
    return reward


def set_price(s: Session, reward_id: int, price: int, *, actor: str, now: dt.datetime) -> Reward:
    """A new price in points, for redemptions from now on (orders taken keep what they paid)."""
    reward = _active_reward(s, reward_id)
    old, reward.points = reward.points, _points(price, "points")
    audit(s, actor=actor, action="reward.price", subject=f"reward:{reward_id}", now=now, old=old, new=price)
    return reward


def withdraw(s: Session, reward_id: int, *, actor: str, now: dt.datetime, reason: str = "") -> Reward:
    """Take a reward out of the catalogue: no more redemptions; pending orders are still listed."""
    reward = _active_reward(s, reward_id)
    reward.status = "withdrawn"
    audit(s, actor=actor, action="reward.withdraw", subject=f"reward:{reward_id}", now=now, reason=reason)
    return reward


# -- stock per station ---------------------------------------------------------------------------------------

def _stock_row(s: Session, reward_id: int, station: str) -> RewardStock | None:
    get(s, Reward, reward_id, "reward")
    get(s, Station, station, "station")
    return s.get(RewardStock, (reward_id, station), populate_existing=True)


def set_stock(s: Session, reward_id: int, station: str, quantity: int, *, actor: str,
              now: dt.datetime) -> RewardStock:
    """The station's stock of a reward after a count."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= MAX_STOCK:
        raise ConfigError(f"stock must be a whole number from 0 to {MAX_STOCK}", key="quantity")
    row = _stock_row(s, reward_id, station)
    old = row.quantity if row is not None else 0
    if row is None:
        row = RewardStock(reward_id=reward_id, station_id=station, quantity=quantity)
        s.add(row)
    row.quantity = quantity
    s.flush()
    audit(s, actor=actor, action="reward.stock", subject=f"reward:{reward_id}", now=now, station=station,
          old=old, new=quantity)
    return row


def adjust_stock(s: Session, reward_id: int, station: str, delta: int, *, actor: str, now: dt.datetime,
                 reason: str = "") -> RewardStock:
    """Goods delivered (+) or gone (-); the stock never goes below zero."""
    if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0 or abs(delta) > MAX_STOCK:
        raise ConfigError(f"a stock change is a whole number from -{MAX_STOCK} to {MAX_STOCK}, not 0",
                          key="delta")
    row = _stock_row(s, reward_id, station)
    if row is None:
        row = RewardStock(reward_id=reward_id, station_id=station, quantity=0)
        s.add(row)
        s.flush()
    if not _move_stock(s, reward_id, station, delta):
        raise RewardError("the station has fewer in stock", reward=reward_id, station=station)
    s.refresh(row)
    audit(s, actor=actor, action="reward.stock_adjust", subject=f"reward:{reward_id}", now=now,
          reason=reason, station=station, delta=delta, quantity=row.quantity)
    return row


def _move_stock(s: Session, reward_id: int, station: str, delta: int) -> bool:
    """Change the stock in the database (a conditional update: two stations' terminals cannot both take
    the last one); False when it would go below zero or out of range, or there is no stock row."""
    done = s.execute(update(RewardStock)
                     .where(RewardStock.reward_id == reward_id, RewardStock.station_id == station,
                            RewardStock.quantity + delta >= 0, RewardStock.quantity + delta <= MAX_STOCK)
                     .values(quantity=RewardStock.quantity + delta)
                     .execution_options(synchronize_session=False))
    return bool(getattr(done, "rowcount", 0))


# -- redemption and returns ----------------------------------------------------------------------------------

def redeem(s: Session, *, account: int, reward: int, station: str, attendant: str, handed_over: bool,
           key: str, now: dt.datetime) -> RewardOrder:
    """Spend the reward's price in points once under "redeem:{key}" and record the order: handed over now
    (one of the station's stock) or ordered (pending, no stock needed). The same key again returns the
    first order; under another reward, station or account it is refused."""
    move_key = _key(key, REDEEM)
    ledger.lock_account(s, account)
    found = s.scalars(select(Movement).where(Movement.key == move_key)).one_or_none()
    if found is not None:
        order = s.scalars(select(RewardOrder).where(RewardOrder.movement_id == found.id)).one_or_none()
        if order is None or (order.account_id, order.reward_id, order.station_id) != (account, reward,
                                                                                      station):
            raise RewardError("request key already used by another redemption", key=key[:20])
        return order
    loyalty_account(s, account)
    item = _active_reward(s, reward)
    get(s, Station, station, "station")
    actor = attendant_actor(s, attendant)
    wallet = points.points_wallet(s, account)
    if wallet.balance < item.points:
        raise RewardError("not enough points for the reward", account=account, balance=wallet.balance,
                          price=item.points)
    if handed_over and not _move_stock(s, reward, station, -1):
        raise RewardError("the reward is out of stock at the station: order it", reward=reward,
                          station=station)
    spent = points.spend(s, wallet, item.points, kind="redeem", key=move_key, at=now, actor=actor)
    order = RewardOrder(reward_id=reward, station_id=station, account_id=account, movement_id=spent.id,
                        status="handed_over" if handed_over else "pending", batch=None,
                        attendant_id=attendant, created_at=now)
    s.add(order)
    s.flush()
    flag_own_card(s, [account], attendant, now=now, detail=f"reward order {order.id} redeemed")
    audit(s, actor=actor, action="reward.redeem", subject=f"order:{order.id}", now=now, account=account,
          reward=reward, station=station, points=item.points, status=order.status)
    return order


def return_order(s: Session, order_id: int, now: dt.datetime, actor: str, *,
                 attendant: str = "") -> RewardOrder:
    """Give the order's points back (registry.loyalty.points.reverse_spend) and, for goods that were at the
    station, its stock +1. A returned order is returned as it is."""
    order = get(s, RewardOrder, order_id, "order")
    ledger.lock_account(s, order.account_id)
    s.refresh(order)
    if order.status == "returned":
        return order
    spent = s.get(Movement, order.movement_id)
    if spent is None:               # a foreign key: only a broken database
        raise RewardError("the order's points movement is gone", order=order_id)
    who = attendant_actor(s, attendant) if attendant else actor
    points.reverse_spend(s, spent.key, now, who)
    if order.status in HANDED:
        if _stock_row(s, order.reward_id, order.station_id) is None:
            s.add(RewardStock(reward_id=order.reward_id, station_id=order.station_id, quantity=0))
            s.flush()
        _move_stock(s, order.reward_id, order.station_id, 1)
    before, order.status = order.status, "returned"
    s.flush()
    flag_own_card(s, [order.account_id], attendant, now=now, detail=f"reward order {order.id} returned")
    audit(s, actor=who, action="reward.return", subject=f"order:{order.id}", now=now, was=before,
          account=order.account_id, points=-spent.amount)
    return order


def deliver(s: Session, order_id: int, now: dt.datetime, actor: str) -> RewardOrder:
    """A listed order's goods reached the station and the customer."""
    order = get(s, RewardOrder, order_id, "order")
    if order.status != "listed":
        raise RewardError("only a listed order is delivered", order=order_id, status=order.status)
    order.status = "delivered"
    audit(s, actor=actor, action="reward.deliver", subject=f"order:{order_id}", now=now)
    return order


# -- the weekly list -----------------------------------------------------------------------------------------

def week_bounds(week: str) -> tuple[dt.datetime, dt.datetime]:
    """An ISO week "W2026-49" as [Monday 00:00, next Monday 00:00) UTC (orders' created_at is UTC)."""
    match = _WEEK.fullmatch(week)
    try:
        if match is None:
            raise ValueError(week)
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError as exc:
        raise ConfigError("week must be an ISO week such as W2026-49", key="week") from exc
    start = dt.datetime.combine(monday, dt.time())
    return start, start + dt.timedelta(days=7)


def consolidate_week(s: Session, week: str, now: dt.datetime) -> list[WeekLine]:
    """Move every order still pending at the end of `week` into its list (batch = week), once: asked again
    it returns the same list (an order synced late, dated in a listed week, waits for the next list). A
    week is listed once it has ended (UTC)."""
    _, end = week_bounds(week)
    if now < end:
        raise RewardError("the week has not ended yet", week=week)
    listed = s.scalar(select(func.count()).select_from(RewardOrder).where(RewardOrder.batch == week))
    if not listed:
        # one conditional update: two runs at once cannot list an order twice or in two weeks
        s.execute(update(RewardOrder).where(RewardOrder.status == "pending", RewardOrder.created_at < end)
                  .values(status="listed", batch=week).execution_options(synchronize_session=False))
        s.flush()
    rows = s.execute(select(RewardOrder.station_id, RewardOrder.reward_id, Reward.name, RewardOrder.id)
                     .join(Reward, Reward.id == RewardOrder.reward_id).where(RewardOrder.batch == week)
                     .order_by(RewardOrder.station_id, RewardOrder.reward_id, RewardOrder.id)).all()
    lines: dict[tuple[str, int], tuple[str, list[int]]] = {}
    for station, reward, name, order in rows:
        lines.setdefault((station, reward), (name, []))[1].append(order)
    return [WeekLine(station, reward, name, len(ids), tuple(ids))
            for (station, reward), (name, ids) in lines.items()]


def orders(s: Session, *, status: str | None = None, station: str | None = None,
           batch: str | None = None) -> list[RewardOrder]:
    query = select(RewardOrder).order_by(RewardOrder.id)
    if status:
        query = query.where(RewardOrder.status == status)
    if station:
        query = query.where(RewardOrder.station_id == station)
    if batch:
        query = query.where(RewardOrder.batch == batch)
    return list(s.scalars(query))
