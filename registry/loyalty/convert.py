"""Points turned into wallet credit by the conversion table (issue 15).

The table is bands: from `min_points` up each point is worth `milli_cents` (thousandths of a cent). A
conversion is valued at the rate of the band its number of points falls in (the band with the highest
min_points not above it), and rounded down to the cent once: the fraction of a cent is not paid out, and
every point asked is spent. The points spent ("convert:{key}:points", a "redeem" movement, oldest awards
first) and the credit ("convert:{key}", a "topup" movement on a prepaid, gift or fleet money wallet) are
booked in one transaction: both or neither. Nothing commits here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.fleet.admin import audit, get
from registry.loyalty import points as points_ledger
from registry.loyalty.rewards import (
    MAX_POINTS,
    RewardError,
    attendant_actor,
    flag_own_card,
    loyalty_account,
)
from registry.models import Account, Movement, PointConversion, Wallet

__all__ = ["CONVERT", "TARGET_KINDS", "Band", "Conversion", "convert", "set_table", "table", "value_cents"]

CONVERT = "convert:"
POINTS_SUFFIX = ":points"
KEY_SIZE = ledger.KEY_LENGTH - len(ledger.REVERSAL) - len(CONVERT) - len(POINTS_SUFFIX)
MAX_MILLI_CENTS = 10**6                 # 10 currency units a point: far above any real table
TARGET_KINDS = ("prepaid", "gift", "fleet")


@dataclass(frozen=True, order=True)
class Band:
    min_points: int
    milli_cents: int


@dataclass(frozen=True)
class Conversion:
    points: int
    cents: int
    spent: Movement
    credited: Movement


def _whole(value: int, low: int, high: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} must be a whole number from {low} to {high}", key=key)
    return value


def value_cents(bands: Sequence[Band], points: int) -> int:
    """What `points` convert to, in cents, rounded down (pure).

    >>> bands = [Band(100, 500), Band(1000, 600)]
    >>> value_cents(bands, 999), value_cents(bands, 1000)
    (499, 600)
    """
    usable = [b for b in bands if b.min_points <= points]
    if not usable:
        smallest = min((b.min_points for b in bands), default=None)
        raise RewardError("too few points to convert" if bands else "no conversion table is set",
                          points=points, minimum=smallest)
    band = max(usable, key=lambda b: b.min_points)
    return points * band.milli_cents // 1000


def table(s: Session) -> list[Band]:
    rows = s.scalars(select(PointConversion).order_by(PointConversion.min_points))
    return [Band(r.min_points, r.milli_cents) for r in rows]


def set_table(s: Session, bands: Sequence[tuple[int, int]], *, actor: str, now: dt.datetime) -> list[Band]:
    """Replace the whole table: (min_points, milli_cents) bands, each min_points once."""
    if not bands:
        raise ConfigError("the conversion table needs at least one band", key="bands")
    checked = sorted(Band(_whole(low, 1, MAX_POINTS, "min_points"),
                          _whole(rate, 1, MAX_MILLI_CENTS, "milli_cents")) for low, rate in bands)
    if len({b.min_points for b in checked}) != len(checked):
        raise ConfigError("each band's min_points must be different", key="min_points")
    old = table(s)
    s.execute(delete(PointConversion))
    s.add_all(PointConversion(min_points=b.min_points, milli_cents=b.milli_cents) for b in checked)
    s.flush()
    audit(s, actor=actor, action="conversion.set", subject="conversion", now=now,
          old=[[b.min_points, b.milli_cents] for b in old],
          new=[[b.min_points, b.milli_cents] for b in checked])
    return checked


def _target(s: Session, wallet: Wallet) -> None:
    account = get(s, Account, wallet.account_id, "account")
    if wallet.unit != "money" or account.kind not in TARGET_KINDS:
        raise ConfigError("points convert to a money wallet of a prepaid, gift or fleet account",
                          wallet=wallet.id, unit=wallet.unit, kind=account.kind)
    if wallet.status != "active" or account.status != "active":
        raise RewardError("the wallet is closed", wallet=wallet.id)


def _booked(s: Session, money_key: str, points_key: str, points: int, wallet: int) -> Conversion | None:
    credited = s.scalars(select(Movement).where(Movement.key == money_key)).one_or_none()
    if credited is None:
        return None
    spent = s.scalars(select(Movement).where(Movement.key == points_key)).one_or_none()
    if spent is None or credited.wallet_id != wallet or -spent.amount != points:
        raise RewardError("request key already used by another conversion", key=money_key[len(CONVERT):][:20])
    return Conversion(points, credited.amount, spent, credited)


def convert(s: Session, *, account: int, points: int, wallet: int, key: str, now: dt.datetime,
            attendant: str) -> Conversion:
    """Spend `points` of the loyalty account and credit their value to `wallet`, once under `key` (the
    same key again returns the first conversion)."""
    if not key or len(key) > KEY_SIZE or not key.isprintable():
        raise ConfigError(f"request key must be 1 to {KEY_SIZE} printable characters", key="key")
    money_key = CONVERT + key
    points_key = money_key + POINTS_SUFFIX
    target = get(s, Wallet, wallet, "wallet")
    for each in sorted({account, target.account_id}):     # one order: two conversions never deadlock
        ledger.lock_account(s, each)
    found = _booked(s, money_key, points_key, points, wallet)
    if found is not None:
        return found
    loyalty_account(s, account)
    actor = attendant_actor(s, attendant)
    _whole(points, 1, MAX_POINTS, "points")
    s.refresh(target)
    _target(s, target)
    cents = value_cents(table(s), points)
    if cents < 1:
        raise RewardError("the points are worth less than a cent", points=points)
    source = points_ledger.points_wallet(s, account)
    if source.balance < points:
        raise RewardError("not enough points to convert", account=account, balance=source.balance,
                          points=points)
    spent = points_ledger.spend(s, source, points, kind="redeem", key=points_key, at=now, actor=actor)
    credited = ledger.topup(s, target, cents, key=money_key, at=now, actor=actor, reason="points converted")
    flag_own_card(s, [account, target.account_id], attendant, now=now,
                  detail=f"{points} points converted to wallet {wallet}")
    audit(s, actor=actor, action="points.convert", subject=f"account:{account}", now=now, points=points,
          cents=cents, wallet=wallet)
    return Conversion(points, cents, spent, credited)
