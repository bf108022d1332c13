"""Top-up bonuses of prepaid and gift cards (TopupBonus rows, "pay 100, get 110"): the operator's add, list
and end, and which bonus a top-up gets.

Decisions where the issue is silent:
- A top-up of at least min_cents, on a local day (the account's time zone) within starts_on..ends_on
  (both inclusive, None open), gets cents * bonus_pct // 100 + bonus_cents: the percentage rounds down
  to the cent, never up (the issuer's money).
- When several offers apply, the one giving the most bonus wins (ties: the lowest id); offers never add up.
- Ending an offer sets its last day (default: yesterday, so it no longer applies from today); rows are kept
  for the audit and for top-ups booked under them.
Nothing commits here; the caller does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet.admin import audit, get
from registry.models import TopupBonus

__all__ = ["KINDS", "MAX_CENTS", "MAX_PCT", "Offer", "add_bonus", "best_bonus", "end_bonus", "list_bonuses",
           "offers_on"]

KINDS = ("prepaid", "gift")
MAX_PCT = 100                   # a bonus of more than the amount paid is a typing error
MAX_CENTS = 10**12              # as registry.fleet.admin.MAX_AMOUNT


@dataclass(frozen=True)
class Offer:
    """A TopupBonus as the choice sees it."""

    id: int
    min_cents: int
    bonus_pct: int
    bonus_cents: int

    def bonus(self, cents: int) -> int:
        """What a top-up of `cents` gets on top (0 below min_cents).

        >>> ten = Offer(1, 10_00, 10, 0)
        >>> ten.bonus(100_00), ten.bonus(9_99), Offer(2, 0, 5, 1_00).bonus(333)
        (1000, 0, 116)
        """
        if cents < self.min_cents:
            return 0
        return cents * self.bonus_pct // 100 + self.bonus_cents


def best_bonus(cents: int, offers: Iterable[Offer]) -> tuple[int, Offer | None]:
    """The largest bonus any offer gives a top-up of `cents`, and that offer (the lowest id on a tie).

    >>> best_bonus(100_00, [Offer(1, 0, 10, 0), Offer(2, 50_00, 0, 15_00), Offer(3, 200_00, 20, 0)])
    (1500, Offer(id=2, min_cents=5000, bonus_pct=0, bonus_cents=1500))
    >>> best_bonus(5_00, [Offer(1, 10_00, 10, 0)])
    (0, None)
    """
    best: tuple[int, Offer | None] = (0, None)
    for offer in sorted(offers, key=lambda o: o.id):
        got = offer.bonus(cents)
        if got > best[0]:
            best = (got, offer)
    return best


def offers_on(s: Session, kind: str, day: dt.date) -> list[Offer]:
    """The offers for an account kind in force on a local day."""
    rows = s.scalars(select(TopupBonus).where(
        TopupBonus.account_kind == kind,
        (TopupBonus.starts_on.is_(None)) | (TopupBonus.starts_on <= day),
        (TopupBonus.ends_on.is_(None)) | (TopupBonus.ends_on >= day)).order_by(TopupBonus.id))
    return [Offer(r.id, r.min_cents, r.bonus_pct, r.bonus_cents) for r in rows]


def add_bonus(s: Session, kind: str, *, min_cents: int, bonus_pct: int = 0, bonus_cents: int = 0,
              starts_on: dt.date | None = None, ends_on: dt.date | None = None, actor: str,
              now: dt.datetime) -> TopupBonus:
    """A new offer; audited."""
    if kind not in KINDS:
        raise ConfigError(f"a top-up bonus is for {' or '.join(KINDS)} cards", key="kind")
    if not 0 <= min_cents <= MAX_CENTS:
        raise ConfigError("the least top-up must be 0 or more", key="min_cents")
    if not 0 <= bonus_pct <= MAX_PCT or not 0 <= bonus_cents <= MAX_CENTS or not (bonus_pct or bonus_cents):
        raise ConfigError(f"a bonus is 0 to {MAX_PCT} percent and/or an amount, not both zero", key="bonus")
    if starts_on is not None and ends_on is not None and ends_on < starts_on:
        raise ConfigError("a bonus ends on or after the day it starts", key="ends_on")
    row = TopupBonus(account_kind=kind, min_cents=min_cents, bonus_pct=bonus_pct, bonus_cents=bonus_cents,
                     starts_on=starts_on, ends_on=ends_on)
    s.add(row)
    s.flush()
    audit(s, actor=actor, action="topup_bonus.add", subject=f"topup_bonus:{row.id}", now=now, kind=kind,
          min_cents=min_cents, bonus_pct=bonus_pct, bonus_cents=bonus_cents, starts_on=starts_on,
          ends_on=ends_on)
    return row


def list_bonuses(s: Session, *, day: dt.date | None = None) -> list[TopupBonus]:
    """Every offer, or (given a day) those in force that day, by id."""
    query = select(TopupBonus).order_by(TopupBonus.id)
    if day is not None:
        query = query.where((TopupBonus.starts_on.is_(None)) | (TopupBonus.starts_on <= day),
                            (TopupBonus.ends_on.is_(None)) | (TopupBonus.ends_on >= day))
    return list(s.scalars(query))


def end_bonus(s: Session, bonus_id: int, *, last_day: dt.date | None = None, actor: str, reason: str = "",
              now: dt.datetime) -> TopupBonus:
    """Make `last_day` (default: yesterday, UTC) the offer's last day; one ending earlier keeps its end."""
    row = get(s, TopupBonus, bonus_id, "topup bonus")
    day = last_day if last_day is not None else now.date() - dt.timedelta(days=1)
    before = row.ends_on
    if before is None or day < before:
        row.ends_on = day
    audit(s, actor=actor, action="topup_bonus.end", subject=f"topup_bonus:{row.id}", now=now,
          reason=reason.strip(), before=before, ends_on=row.ends_on)
    return row
