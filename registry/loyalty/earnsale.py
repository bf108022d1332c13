"""Points on a settled sale: find the loyalty account, compute (contracts.loyalty.earn), cap, award once.

The account is the loyalty card's shown at the terminal (SALE loyalty_sealed), else the one the paying card
is linked to (LoyaltyLink by its token). The programme is the one in force on the sale's local date (the
loyalty account's time zone). The points are awarded once under "earn:{sale_id}" in the caller's
transaction; what one card earns in a local day stops at settings.daily_cap_points (the rest is not
awarded, and a LoyaltyFlag "daily_cap" says so). The card's account lock is taken first, so two sales of
one card at once cannot both pass the cap. A sale paid by a voucher earns nothing
(contracts.loyalty.NO_POINTS); the first-use bonus is used up by the first sale that is awarded points
(one capped to nothing is not).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session

from contracts import loyalty
from contracts.errors import ConfigError
from contracts.messages import parse_timestamp
from contracts.panseal import PanSealError, derive_pan_key, unseal_pan
from registry.fleet import ledger, rules
from registry.keys import RegistryKeys
from registry.loyalty import points
from registry.loyalty.settings import Settings, load
from registry.models import (
    Account,
    Card,
    Device,
    EarnRule,
    LoyaltyFlag,
    LoyaltyLink,
    LoyaltyMember,
    Movement,
    Product,
    Promotion,
    StationGroupMember,
    Tier,
    Transaction,
)

__all__ = ["Awarded", "book_sale", "config_settings", "find_account", "on_sale", "programme"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Awarded:
    """What a sale earned on a loyalty account: `points` awarded, `earned` before the daily cap."""

    account_id: int
    points: int
    earned: int
    steps: tuple[loyalty.Step, ...]
    movement_id: int | None


def programme(s: Session, day: dt.date | None, settings: Settings) -> loyalty.Programme:
    """The rules and promotions in force on `day` (None: all of them), the tiers' multipliers and the
    first-use bonus."""
    def live(model: type[EarnRule | Promotion]) -> Any:
        if day is None:
            return true()
        return and_(or_(model.starts_on.is_(None), model.starts_on <= day),
                    or_(model.ends_on.is_(None), model.ends_on >= day))

    earn_rules = tuple(loyalty.EarnRule(r.product, r.basis, r.milli_points, r.starts_on, r.ends_on)
                       for r in s.scalars(select(EarnRule).where(live(EarnRule)).order_by(EarnRule.id)))
    promos = tuple(loyalty.Promotion(p.name, p.position, p.product,
                                     tuple(x for x in p.stations.split(",") if x), p.starts_on, p.ends_on,
                                     p.multiplier_pct, p.bonus_points, p.stop)
                   for p in s.scalars(select(Promotion).where(live(Promotion))
                                      .order_by(Promotion.position, Promotion.id)))
    tiers = {t.name: t.multiplier_pct for t in s.scalars(select(Tier))}
    return loyalty.Programme(earn_rules, promos, settings.first_use_days, settings.first_use_pct, tiers)


def config_settings(s: Session, station: str, today: dt.date) -> dict[str, int | str]:
    """The programme as the signed configuration of `station` carries it (programs[name="loyalty"]
    .settings): every rule and this station's promotions not ended before `today`, so that the terminal
    prints offline the points the registry books (contracts.loyalty.programme_doc; MessageError when the
    programme does not fit the configuration)."""
    prog = programme(s, None, load(s))
    groups = s.scalars(select(StationGroupMember.group).where(StationGroupMember.station_id == station))
    return loyalty.programme_doc(prog, station=station, groups=tuple(groups), since=today)


def find_account(s: Session, *, loyalty_token: str | None, payer_token: str | None) -> tuple[int, str] | None:
    """(loyalty account id, the earning card's reference for the daily cap), or None: the loyalty card
    shown (an active card of a loyalty account), else the paying card's link."""
    if loyalty_token is not None:
        card = s.scalar(select(Card).where(Card.token == loyalty_token))
        if card is not None and card.status == "active" and card.account_id is not None:
            account = s.get(Account, card.account_id)
            if account is not None and account.kind == "loyalty":
                return account.id, f"card:{card.id}"
    if payer_token is not None:
        link = s.get(LoyaltyLink, payer_token)
        if link is not None:
            return link.account_id, f"link:{payer_token[:16]}"
    return None


def _day_window(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """A local day as naive UTC [start, end)."""
    zone = rules.local_time(dt.datetime(2000, 1, 1), tz).tzinfo
    start = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
    end = start.replace(tzinfo=None) + dt.timedelta(days=1)
    return (start.astimezone(dt.UTC).replace(tzinfo=None),
            end.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None))


def _earned_today(s: Session, wallet_id: int, ref: str, window: tuple[dt.datetime, dt.datetime]) -> int:
    # the earning card is kept in the movement's reason ("card:12", "link:..."): point_awards has no card
    total = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0)).where(
        Movement.wallet_id == wallet_id, Movement.kind == "earn", Movement.reason == ref,
        Movement.at >= window[0], Movement.at < window[1]))
    return int(total or 0)


def book_sale(s: Session, tx: Transaction, *, loyalty_token: str | None, payer_token: str | None,
              now: dt.datetime) -> Awarded | None:
    """Award the sale's points once; None when no loyalty account earns on it. `tx` is the sale's row
    (stored or about to be). Nothing commits here."""
    if tx.kind in loyalty.NO_POINTS:
        return None
    found = find_account(s, loyalty_token=loyalty_token, payer_token=payer_token)
    if found is None:
        return None
    account_id, ref = found
    key = points.earn_key(tx.sale_id)
    done = s.scalar(select(Movement).where(Movement.key == key))
    if done is not None:                               # booked before: the same answer, nothing new
        return Awarded(account_id, done.amount, done.amount, (), done.id)
    wallet = points.points_wallet(s, account_id)       # what can fail comes before anything is written
    settings = load(s)
    account = ledger.lock_account(s, account_id)
    member = s.get(LoyaltyMember, account_id)
    if member is None or account.status != "active":
        return None
    at = min(tx.finished_at, now)
    day = rules.local_time(at, account.timezone).date()
    group = s.scalar(select(Product.group).where(Product.code == (tx.product or ""))) or ""
    station_groups = tuple(s.scalars(select(StationGroupMember.group)
                                     .where(StationGroupMember.station_id == tx.station_id)))
    facts = loyalty.SaleFacts(tx.product or "", group, tx.station_id, tx.volume_cl, tx.amount_cents, day,
                              station_groups)
    prog = programme(s, day, settings)
    first = loyalty.first_use_applies(prog, member.issued_on, day,
                                      earned_before=member.first_used_at is not None)
    got = loyalty.earn(prog, facts, tier=member.tier, first_use=first)
    if got.points <= 0:
        return Awarded(account_id, 0, 0, got.steps, None)
    today = _earned_today(s, wallet.id, ref, _day_window(day, account.timezone))
    room = max(0, settings.daily_cap_points - today)
    given = min(got.points, room)
    flagged = s.scalar(select(LoyaltyFlag.id).where(LoyaltyFlag.sale_id == tx.sale_id,
                                                    LoyaltyFlag.kind == "daily_cap").limit(1))
    if given < got.points and flagged is None:          # a sale capped to nothing, booked again: one flag
        s.add(LoyaltyFlag(kind="daily_cap", account_id=account_id, sale_id=tx.sale_id, at=now,
                          detail=f"earned {got.points}, awarded {given}, cap {settings.daily_cap_points}"))
    movement_id = None
    if given > 0:
        if member.first_used_at is None:                # the first sale that earns: capped to 0 is none
            member.first_used_at = at
        movement = points.award(s, wallet, given, key=key, at=at, station=tx.station_id, product_group=group,
                                sale_id=tx.sale_id, actor="sale", reason=ref)
        movement_id = movement.id
    s.flush()
    return Awarded(account_id, given, got.points, got.steps, movement_id)


def _unseal(keys: RegistryKeys | None, device: Device | None, sale: dict[str, Any], field: str) -> str | None:
    """The token of a card number sealed in the sale (contracts.panseal, bound to the sale); None when
    there is none or it does not open (logged, without the number)."""
    if field not in sale or keys is None or device is None:
        return None
    try:
        number = unseal_pan(derive_pan_key(keys.device_key(device.pin_key_hex)), sale[field],
                            request_id=sale["sale_id"], terminal=sale["terminal"], station=sale["station"])
    except (PanSealError, ConfigError):
        log.warning("sealed card number does not open", extra={"sale_id": sale["sale_id"], "field": field})
        return None
    return keys.token(number)


def on_sale(s: Session, sale: dict[str, Any], tx: Transaction, device: Device | None,
            keys: RegistryKeys | None, now: dt.datetime) -> Awarded | None:
    """registry.service's call for a sale it stores (not held): points when the sale carries a loyalty
    card, or its paying card (a fleet card, or one sealed in the sale) is linked to a loyalty account."""
    loyalty_token = _unseal(keys, device, sale, "loyalty_sealed")
    payer = None
    if tx.card_id is not None:
        card = s.get(Card, tx.card_id)
        payer = card.token if card is not None else None
    elif "card_sealed" in sale:
        payer = _unseal(keys, device, sale, "card_sealed")
    if loyalty_token is None and (payer is None or s.get(LoyaltyLink, payer) is None):
        return None
    if tx.finished_at is None:
        tx.finished_at = parse_timestamp(sale["finished_at"])
    try:
        return book_sale(s, tx, loyalty_token=loyalty_token, payer_token=payer, now=now)
    except (points.PointsError, ConfigError):
        # a loyalty account without its points wallet, a setting stored out of range: the sale is stored
        # all the same (refusing it would have the terminal send it for ever); an operator must look
        log.error("loyalty points not booked", extra={"sale_id": sale["sale_id"], "alarm": "loyalty_earn"})
        return None
