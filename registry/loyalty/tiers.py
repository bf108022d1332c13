"""Tiers: the pure choice from spend over a rolling window, and the review of one loyalty account.

A tier is earned by its min_spend_cents over the last tier_window_months: the review picks the highest-
ranked tier the spend reaches, so an account moves up as soon as it spends enough and down when its older
spend leaves the window. The spend is the account's settled sales (not held, not voided): those paid with
its own cards or its linked cards, and any other sale that earned on it (a loyalty card shown, another card
paying).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet import rules
from registry.fleet.admin import audit
from registry.models import Account, Card, LoyaltyLink, LoyaltyMember, Movement, Tier, Transaction, Wallet

__all__ = ["BASE", "TierSpec", "choose", "months_back", "review", "spend_cents", "tier_specs"]

BASE = "base"               # the tier of an account no tier's spend reaches


@dataclass(frozen=True)
class TierSpec:
    name: str
    rank: int
    multiplier_pct: int
    min_spend_cents: int


def choose(tiers: Iterable[TierSpec], spend_cents: int) -> str:
    """The highest-ranked tier whose minimum the spend reaches; BASE when none.

    >>> ts = [TierSpec("base", 0, 100, 0), TierSpec("silver", 1, 125, 50_000),
    ...       TierSpec("gold", 2, 150, 150_000)]
    >>> choose(ts, 49_999), choose(ts, 50_000), choose(ts, 10**9)
    ('base', 'silver', 'gold')
    """
    reached = [t for t in tiers if spend_cents >= t.min_spend_cents]
    return max(reached, key=lambda t: t.rank).name if reached else BASE


def months_back(day: dt.date, months: int) -> dt.date:
    """The same day `months` earlier (the month's last day when it has no such day).

    >>> months_back(dt.date(2026, 3, 31), 1), months_back(dt.date(2026, 12, 2), 12)
    (datetime.date(2026, 2, 28), datetime.date(2025, 12, 2))
    """
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise ConfigError("no such month", months=months)       # unreachable: every month has 28 days


def tier_specs(s: Session) -> list[TierSpec]:
    return [TierSpec(t.name, t.rank, t.multiplier_pct, t.min_spend_cents)
            for t in s.scalars(select(Tier).order_by(Tier.rank))]


def spend_cents(s: Session, account_id: int, since: dt.datetime, until: dt.datetime) -> int:
    """What the account's settled sales (not voided) from `since` to before `until` (UTC) amount to."""
    linked = select(LoyaltyLink.token).where(LoyaltyLink.account_id == account_id)
    cards = select(Card.id).where(or_(Card.account_id == account_id, Card.token.in_(linked)))
    earned = (select(Movement.sale_id).join(Wallet, Wallet.id == Movement.wallet_id)
              .where(Wallet.account_id == account_id, Movement.kind == "earn", Movement.sale_id.is_not(None)))
    total = s.scalar(select(func.coalesce(func.sum(Transaction.amount_cents), 0)).where(
        Transaction.held.is_(False), Transaction.finished_at >= since, Transaction.finished_at < until,
        ~Transaction.flags.contains("voided"),             # a voided sale (registry.voids) spent nothing
        or_(Transaction.card_id.in_(cards), Transaction.sale_id.in_(earned))))
    return int(total or 0)


def review(s: Session, account_id: int, *, now: dt.datetime, window_months: int, actor: str = "close",
           tiers: list[TierSpec] | None = None) -> tuple[str, str]:
    """Set the account's tier from its spend over the last window_months up to today (its local day);
    (old tier, new tier). A change is audited."""
    member = s.get(LoyaltyMember, account_id)
    account = s.get(Account, account_id)
    if member is None or account is None:
        raise ConfigError("not a loyalty account", account=account_id)
    today = rules.local_time(now, account.timezone).date()
    start = months_back(today, window_months)
    zone = rules.local_time(now, account.timezone).tzinfo
    since = (dt.datetime(start.year, start.month, start.day, tzinfo=zone)
             .astimezone(dt.UTC).replace(tzinfo=None))
    spent = spend_cents(s, account_id, since, now)
    old, new = member.tier, choose(tier_specs(s) if tiers is None else tiers, spent)
    if new != old:
        member.tier, member.tier_since = new, today
        audit(s, actor=actor, action="loyalty.tier", subject=f"account:{account_id}", now=now,
              old=old, new=new, spend_cents=spent, window_months=window_months)
        s.flush()
    return old, new
