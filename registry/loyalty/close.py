"""The monthly close of the loyalty points: expiry of the oldest points, pooling, and the tier review.

For month M (YYYY-MM), per account with a points wallet, once M is over in the account's time zone:
1. expiry: points still left of awards earned before the cutoff expire, one movement
   "expiry:{wallet}:{M}" taking exactly those awards (the oldest, so the oldest points only). The cutoff is
   the first day after M, expiry_months back: by M's end those points are at least expiry_months old.
2. pooling: a member account with a pool account (LoyaltyMember.pool_account_id) moves what is left of its
   awards earned by M's end into the pool's wallet: one transfer_out "pool:{member}:{M}", one transfer_in
   per award ("pool:{member}:{M}:{award}") whose new award is dated as the original so expiry stays fair.
   The new award has no station: the station was credited for the points once, when they were earned.
   Points given back to a member after its pooling wait for the next month's.
3. tiers: the review hook (registry.loyalty.tiers.review by default in run_close) with M's end as now, so
   a second run of the month gives the same tier.
Each step is keyed by the month: a second run books nothing twice. `close_account` and `close_month` do
not commit; `run_close` commits per account.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError, ForecourtError
from registry.fleet.admin import audit
from registry.loyalty import points, settings, tiers
from registry.models import Account, LoyaltyMember, Movement, PointAward, Wallet

__all__ = ["AccountClose", "CloseSummary", "Review", "close_account", "close_month", "expiry_cutoff",
           "month_start", "next_month", "run_close"]

# the tier review: (session, account id, the month's end as now) -> (old tier, new tier)
Review = Callable[[Session, int, dt.datetime], tuple[str, str]]
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)


@dataclass
class AccountClose:
    """What the close did to one account: points expired, points pooled out, its tier (old, new)."""

    account_id: int
    expired: int = 0
    pooled: int = 0
    tier: tuple[str, str] | None = None
    skipped: str = ""           # why nothing was done: the month is not over there, no points wallet...


@dataclass
class CloseSummary:
    month: str
    accounts: list[AccountClose] = field(default_factory=list)

    @property
    def expired(self) -> int:
        return sum(a.expired for a in self.accounts)

    @property
    def pooled(self) -> int:
        return sum(a.pooled for a in self.accounts)

    @property
    def skipped(self) -> list[AccountClose]:
        return [a for a in self.accounts if a.skipped]


def month_start(month: str) -> dt.date:
    """The first day of month "YYYY-MM"; ConfigError for anything else.

    >>> month_start("2026-11")
    datetime.date(2026, 11, 1)
    """
    found = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1:
        raise ConfigError("month must be YYYY-MM", key="month")
    return dt.date(int(found.group(1)), int(found.group(2)), 1)


def next_month(first: dt.date, months: int = 1) -> dt.date:
    """The first day `months` (may be negative) after the month of `first`.

    >>> next_month(dt.date(2026, 12, 1)), next_month(dt.date(2026, 12, 1), -24)
    (datetime.date(2027, 1, 1), datetime.date(2024, 12, 1))
    """
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def expiry_cutoff(month: str, expiry_months: int) -> dt.date:
    """Awards earned before this day (local) expire at the close of `month`.

    >>> expiry_cutoff("2026-11", 24)
    datetime.date(2024, 12, 1)
    """
    if isinstance(expiry_months, bool) or not isinstance(expiry_months, int) or expiry_months < 1:
        raise ConfigError("expiry_months must be a whole number of months, at least 1", key="expiry_months")
    return next_month(month_start(month), 1 - expiry_months)


def _utc(day: dt.date, tz: str) -> dt.datetime:
    """Local midnight starting `day` in zone `tz`, as the naive UTC the database keeps."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("unknown time zone", tz=tz) from exc
    aware = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return aware.astimezone(dt.UTC).replace(tzinfo=None)


def _exists(s: Session, key: str) -> bool:
    return s.scalar(select(Movement.id).where(Movement.key == key)) is not None


def _expire(s: Session, wallet: Wallet, month: str, cutoff: dt.datetime, now: dt.datetime,
            actor: str) -> int:
    key = f"expiry:{wallet.id}:{month}"
    if _exists(s, key):
        return 0
    points.lock(s, wallet)          # a redeem meanwhile would otherwise change which awards are oldest
    due = s.scalar(select(func.coalesce(func.sum(PointAward.remaining), 0))
                   .where(PointAward.wallet_id == wallet.id, PointAward.earned_at < cutoff))
    if not due:
        return 0
    points.spend(s, wallet, int(due), kind="expiry", key=key, at=now, actor=actor,
                 reason=f"points earned before {cutoff:%Y-%m-%d} expire")
    return int(due)


def _pool(s: Session, wallet: Wallet, member: LoyaltyMember, month: str, end: dt.datetime,
          now: dt.datetime, actor: str) -> int:
    if member.pool_account_id is None:
        return 0
    target = points.points_wallet(s, member.pool_account_id)
    return points.pool(s, wallet, target, before=end, key=f"pool:{member.account_id}:{month}", at=now,
                       actor=actor)


def close_account(s: Session, account_id: int, month: str, now: dt.datetime, *, expiry_months: int,
                  review: Review | None = None, actor: str = "close") -> AccountClose:
    """Close `month` for one account (see the module); nothing commits. An account whose month is not
    over yet in its time zone, or that has no points wallet, is skipped (its AccountClose says why)."""
    done = AccountClose(account_id)
    account = s.get(Account, account_id)
    if account is None:
        raise ConfigError("unknown account", account=account_id)
    end = _utc(next_month(month_start(month)), account.timezone)
    if now < end:
        done.skipped = "month not over"
        return done
    try:
        wallet = points.points_wallet(s, account_id)
    except points.PointsError:
        done.skipped = "no points wallet"
        return done
    done.expired = _expire(s, wallet, month, _utc(expiry_cutoff(month, expiry_months), account.timezone),
                           now, actor)
    member = s.get(LoyaltyMember, account_id)
    if member is not None and member.pool_account_id not in (None, account_id):
        done.pooled = _pool(s, wallet, member, month, end, now, actor)
    if member is not None and review is not None:
        done.tier = review(s, account_id, end)
    return done


def _accounts(s: Session) -> list[int]:
    """Accounts with a points wallet, by id."""
    return list(s.scalars(select(Wallet.account_id).where(Wallet.unit == points.POINTS).distinct()
                          .order_by(Wallet.account_id)))


def close_month(s: Session, month: str, now: dt.datetime, *, expiry_months: int,
                review: Review | None = None, actor: str = "close") -> CloseSummary:
    """Close `month` for every account with a points wallet in one transaction (nothing commits)."""
    expiry_cutoff(month, expiry_months)
    summary = CloseSummary(month)
    for account_id in _accounts(s):
        summary.accounts.append(close_account(s, account_id, month, now, expiry_months=expiry_months,
                                              review=review, actor=actor))
    return summary


def tier_review(window_months: int, actor: str = "close") -> Review:
    """registry.loyalty.tiers.review over `window_months`, as a close's review hook."""
    def review(s: Session, account_id: int, now: dt.datetime) -> tuple[str, str]:
        return tiers.review(s, account_id, now=now, window_months=window_months, actor=actor)
    return review


def run_close(session_factory: sessionmaker[Session], month: str, now: dt.datetime, *,
              review: Review | None = None, actor: str = "close", tries: int = 3) -> CloseSummary:
    """Close `month` with the programme's settings, one transaction per account, committed as it goes,
    then one audit entry. Default review: the tiers over settings.tier_window_months.

    An account another session changed meanwhile (a key booked twice, a lock given up) is tried again,
    up to `tries` times; one the ledger refuses is rolled back and listed as skipped with the reason, and
    the others are closed. Running it again finishes what a failed run left and books nothing twice.
    """
    month_start(month)
    with session_factory() as s:
        conf = settings.load(s)
        ids = _accounts(s)
    hook = review if review is not None else tier_review(conf.tier_window_months, actor)
    summary = CloseSummary(month)
    for account_id in ids:
        summary.accounts.append(_close_one(session_factory, account_id, month, now, conf.expiry_months,
                                           hook, actor, tries))
    with session_factory() as s:
        audit(s, actor=actor, action="loyalty.close", subject=f"month:{month}", now=now,
              accounts=len(summary.accounts), expired=summary.expired, pooled=summary.pooled,
              skipped=len(summary.skipped))
        s.commit()
    return summary


def _close_one(session_factory: sessionmaker[Session], account_id: int, month: str, now: dt.datetime,
               expiry_months: int, review: Review, actor: str, tries: int) -> AccountClose:
    attempt = 1
    while True:
        with session_factory() as s:
            try:
                done = close_account(s, account_id, month, now, expiry_months=expiry_months, review=review,
                                     actor=actor)
                s.commit()
                return done
            except (IntegrityError, OperationalError):
                s.rollback()
                if attempt >= tries:
                    raise
            except ForecourtError as exc:
                s.rollback()
                return AccountClose(account_id, skipped=str(exc)[:200])
        attempt += 1
