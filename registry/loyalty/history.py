"""The last movements of a card's loyalty points, as the terminal shows and prints them: date and time in
the account's time zone, station, points and kind, newest first.

A card is found by its keyed token: a loyalty card (cards.account_id on a loyalty account) or a fleet or
bank card linked to one (LoyaltyLink). A member account pooled into another shows nothing: its cards
neither see nor redeem points. The station of a movement is its award's (an earn), its reward order's (a
redeem), else its sale's; "" when it has none (an expiry, a pool transfer, a correction).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet.rules import local_time
from registry.loyalty.points import POINTS, PointsError
from registry.models import (
    Account,
    Card,
    LoyaltyLink,
    LoyaltyMember,
    Movement,
    PointAward,
    RewardOrder,
    Transaction,
    Wallet,
)

__all__ = ["HISTORY_SIZE", "History", "Line", "card_history", "loyalty_account"]

HISTORY_SIZE = 30               # the issue: the last 30 movements of a card
MAX_SIZE = 100


@dataclass(frozen=True)
class Line:
    date: dt.date               # local, the account's time zone
    time: dt.time               # local, whole seconds
    station: str
    points: int                 # signed
    kind: str                   # earn redeem expiry reversal transfer_in transfer_out correction


@dataclass(frozen=True)
class History:
    account_id: int
    pooled: bool
    balance: int | None         # None when pooled: the card shows no points
    lines: tuple[Line, ...]


def loyalty_account(s: Session, token: str) -> int:
    """The loyalty account a card (by its keyed token) earns on; PointsError when it earns on none, or when
    it is a loyalty card that is not active (blocked, lost, stolen, replaced, expired...: its points are
    the account's other cards', never a link's to look up). A link has no status of its own."""
    found = s.execute(select(Account.id, Card.status).join(Card, Card.account_id == Account.id)
                      .where(Card.token == token, Account.kind == "loyalty")).first()
    if found is not None:
        if found.status != "active":
            raise PointsError("loyalty card is not active", status=found.status)
        return int(found.id)
    link = s.get(LoyaltyLink, token)
    if link is None:
        raise PointsError("card has no loyalty account")
    return link.account_id


def _stations(s: Session, moves: list[Movement]) -> dict[int, str]:
    """Each movement's station: its award's, its reward order's, else its sale's."""
    ids = [m.id for m in moves]
    found: dict[int, str] = {}
    sales = {m.sale_id for m in moves if m.sale_id}
    if sales:
        by_sale = {sale: station for sale, station in s.execute(
            select(Transaction.sale_id, Transaction.station_id).where(Transaction.sale_id.in_(sales)))}
        found.update({m.id: by_sale[m.sale_id] for m in moves if m.sale_id in by_sale})
    found.update({mid: station for mid, station in s.execute(
        select(RewardOrder.movement_id, RewardOrder.station_id).where(RewardOrder.movement_id.in_(ids)))})
    found.update({mid: station for mid, station in s.execute(
        select(PointAward.movement_id, PointAward.station_id).where(PointAward.movement_id.in_(ids)))
        if station})
    return found


def card_history(s: Session, token: str, *, limit: int = HISTORY_SIZE) -> History:
    """The last `limit` movements of the points of the card's loyalty account, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SIZE:
        raise ConfigError(f"history size must be 1 to {MAX_SIZE}", key="limit")
    account_id = loyalty_account(s, token)
    account = s.get(Account, account_id)
    member = s.get(LoyaltyMember, account_id)
    if account is None:         # links and cards refer to accounts by foreign key: only a broken database
        raise PointsError("card's loyalty account is gone")
    if member is not None and member.pool_account_id not in (None, account_id):
        return History(account_id, True, None, ())
    wallet = s.scalars(select(Wallet).where(Wallet.account_id == account_id, Wallet.unit == POINTS)
                       .order_by(Wallet.id).limit(1)).first()
    if wallet is None:
        return History(account_id, False, 0, ())
    moves = list(s.scalars(select(Movement).where(Movement.wallet_id == wallet.id)
                           .order_by(Movement.id.desc()).limit(limit)))
    stations = _stations(s, moves)
    lines = []
    for each in moves:
        local = local_time(each.at, account.timezone)
        lines.append(Line(local.date(), local.time().replace(microsecond=0), stations.get(each.id, ""),
                          each.amount, each.kind))
    return History(account_id, False, wallet.balance, tuple(lines))
