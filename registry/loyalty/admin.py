"""Operator changes to the loyalty programme: accounts, their cards and links, earn rules, promotions,
tiers and settings. Each change writes an AuditEntry (registry.fleet.admin.audit); nothing commits here.

A loyalty account is an Account(kind "loyalty"), its LoyaltyMember row and one points wallet. It has at
most settings.group_cards cards (group cards share its balance; links to fleet or bank cards are apart and
not counted). A card number is on one account only: as a card, or as a link, never both nor twice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import loyalty
from contracts.cards import mask_number
from contracts.errors import ConfigError
from registry.fleet import cards as fleet_cards
from registry.fleet.admin import audit, get
from registry.fleet.rules import local_time
from registry.keys import RegistryKeys
from registry.loyalty import points
from registry.loyalty import settings as loyalty_settings
from registry.models import (
    Account,
    Card,
    Customer,
    EarnRule,
    LoyaltyLink,
    LoyaltyMember,
    Product,
    Promotion,
    Tier,
    Wallet,
)

__all__ = ["AccountView", "add_card", "add_promotion", "add_rule", "create_account", "end_promotion",
           "end_rule", "link_card", "loyalty_account", "set_pool", "set_setting", "set_tier", "show",
           "unlink_card"]

_NAME = re.compile(r"[^\x00-\x1f\x7f|]{1,100}")
_GROUP = re.compile(r"group:[a-z0-9_]{1,16}", re.ASCII)
_STATION = re.compile(r"(group:)?[A-Za-z0-9_.-]{1,64}", re.ASCII)


@dataclass(frozen=True)
class AccountView:
    """What `loyalty account show` prints (masked numbers only)."""

    id: int
    name: str
    status: str
    tier: str
    issued_on: dt.date
    first_used_at: dt.datetime | None
    pool_account_id: int | None
    balance: int
    cards: tuple[tuple[int, str, str], ...]      # (card id, masked, status)
    links: tuple[str, ...]                       # masked numbers


def loyalty_account(s: Session, account_id: int) -> tuple[Account, LoyaltyMember]:
    """The loyalty account and its member row; ConfigError for any other account."""
    account = get(s, Account, account_id, "account")
    member = s.get(LoyaltyMember, account_id)
    if account.kind != "loyalty" or member is None:
        raise ConfigError("not a loyalty account", account=account_id)
    return account, member


def create_account(s: Session, name: str, *, issued_on: dt.date, timezone: str = "UTC",
                   customer_id: int | None = None, actor: str, now: dt.datetime) -> Account:
    """A loyalty account: the account, its member row (tier "base") and its points wallet."""
    if not _NAME.fullmatch(name.strip()):
        raise ConfigError("name must be 1 to 100 characters without control characters", key="name")
    if customer_id is not None:
        get(s, Customer, customer_id, "customer")
    local_time(dt.datetime(2000, 1, 1), timezone)          # ConfigError for an unknown zone
    account = Account(name=name.strip(), customer_id=customer_id, kind="loyalty", timezone=timezone,
                      status="active", auth_seq=0)
    s.add(account)
    s.flush()
    s.add(LoyaltyMember(account_id=account.id, tier="base", issued_on=issued_on))
    s.add(Wallet(account_id=account.id, allowed_products="*", name="points", unit=points.POINTS,
                 mode="prepaid", credit_limit=0, balance=0, priority=0, stations="", status="active"))
    s.flush()
    audit(s, actor=actor, action="loyalty.account.create", subject=f"account:{account.id}", now=now,
          name=account.name, issued_on=issued_on, timezone=timezone, customer=customer_id)
    return account


def _taken(s: Session, token: str) -> None:
    if s.get(LoyaltyLink, token) is not None:
        raise ConfigError("this card is linked to a loyalty account already", key="number")


def add_card(s: Session, keys: RegistryKeys, account_id: int, number: str, *, medium: str, expiry: str,
             actor: str, now: dt.datetime) -> fleet_cards.IssuedCard:
    """A loyalty card on the account, active at once; at most settings.group_cards live cards."""
    loyalty_account(s, account_id)
    token = keys.token(fleet_cards.parse_number(number, medium))
    _taken(s, token)
    live = s.scalar(select(func.count()).select_from(Card).where(
        Card.account_id == account_id, Card.status.not_in(fleet_cards.FINAL)))
    most = loyalty_settings.load(s).group_cards
    if int(live or 0) >= most:
        raise ConfigError(f"a loyalty account has at most {most} cards (setting group_cards)",
                          account=account_id)
    return fleet_cards.issue_card(s, keys, account_id, number, medium=medium, expiry=expiry, pin=None,
                                  actor=actor, now=now, activate=True)


def link_card(s: Session, keys: RegistryKeys, account_id: int, number: str, *, medium: str = "chip",
              actor: str, now: dt.datetime) -> LoyaltyLink:
    """Link a fleet or bank card: its sales earn on the account. Only its token and masked number are kept."""
    loyalty_account(s, account_id)
    number = fleet_cards.parse_number(number, medium)
    token, masked = keys.token(number), mask_number(number)
    _taken(s, token)
    card = s.scalar(select(Card).where(Card.token == token))
    if card is not None and card.account_id is not None:
        owner = s.get(Account, card.account_id)
        if owner is not None and owner.kind == "loyalty":
            raise ConfigError("a loyalty card earns on its own account; it is not linked", key="number")
    link = LoyaltyLink(token=token, account_id=account_id, masked=masked, created_at=now)
    s.add(link)
    s.flush()
    audit(s, actor=actor, action="loyalty.link", subject=f"account:{account_id}", now=now, masked=masked)
    return link


def unlink_card(s: Session, keys: RegistryKeys, account_id: int, number: str, *, medium: str = "chip",
                actor: str, reason: str, now: dt.datetime) -> None:
    link = s.get(LoyaltyLink, keys.token(fleet_cards.parse_number(number, medium)))
    if link is None or link.account_id != account_id:
        raise ConfigError("this card is not linked to the account", account=account_id)
    masked = link.masked
    s.delete(link)
    s.flush()
    audit(s, actor=actor, action="loyalty.unlink", subject=f"account:{account_id}", now=now, reason=reason,
          masked=masked)


def set_pool(s: Session, account_id: int, pool_id: int | None, *, actor: str, now: dt.datetime) -> None:
    """Pool the account's points into another loyalty account at each monthly close (None: stop)."""
    _, member = loyalty_account(s, account_id)
    if pool_id is not None:
        _, pool = loyalty_account(s, pool_id)
        if pool_id == account_id or pool.pool_account_id is not None:
            raise ConfigError("a pool is another loyalty account, itself not pooled", account=pool_id)
        if s.scalar(select(LoyaltyMember.account_id).where(LoyaltyMember.pool_account_id == account_id)
                    .limit(1)) is not None:
            raise ConfigError("this account is a pool: it is not pooled itself", account=account_id)
    old, member.pool_account_id = member.pool_account_id, pool_id
    s.flush()
    audit(s, actor=actor, action="loyalty.pool", subject=f"account:{account_id}", now=now, old=old,
          new=pool_id)


def show(s: Session, account_id: int) -> AccountView:
    account, member = loyalty_account(s, account_id)
    wallet = points.points_wallet(s, account_id)
    cards = tuple((c.id, c.masked, c.status) for c in s.scalars(
        select(Card).where(Card.account_id == account_id).order_by(Card.id)))
    links = tuple(s.scalars(select(LoyaltyLink.masked).where(LoyaltyLink.account_id == account_id)
                            .order_by(LoyaltyLink.created_at)))
    return AccountView(account.id, account.name, account.status, member.tier, member.issued_on,
                       member.first_used_at, member.pool_account_id, wallet.balance, cards, links)


# -- the programme ----------------------------------------------------------------------------------------

def _product(s: Session, product: str) -> str:
    product = product.strip()
    if product == "*" or _GROUP.fullmatch(product):
        return product
    if s.get(Product, product) is None:
        raise ConfigError("product must be *, group:NAME or a product code", key="product")
    return product


def add_rule(s: Session, product: str, basis: str, milli_points: int, *, starts_on: dt.date | None = None,
             ends_on: dt.date | None = None, actor: str, now: dt.datetime) -> EarnRule:
    """An earn rule: milli_points thousandths of a point per litre (volume) or currency unit (money)."""
    checked = loyalty.EarnRule(_product(s, product), basis, milli_points, starts_on, ends_on)
    rule = EarnRule(product=checked.product, basis=basis, milli_points=milli_points, starts_on=starts_on,
                    ends_on=ends_on)
    s.add(rule)
    s.flush()
    audit(s, actor=actor, action="loyalty.rule.add", subject=f"earn_rule:{rule.id}", now=now,
          product=rule.product, basis=basis, milli_points=milli_points, starts_on=starts_on, ends_on=ends_on)
    return rule


def _end_day(starts_on: dt.date | None, ends_on: dt.date | None, on: dt.date) -> dt.date:
    if starts_on is not None and on < starts_on:
        raise ConfigError("cannot end before it starts; it can end on its first day", key="on")
    return on if ends_on is None else min(ends_on, on)


def end_rule(s: Session, rule_id: int, *, on: dt.date, actor: str, now: dt.datetime) -> EarnRule:
    """The rule's last day becomes `on` (or stays, when earlier): sales up to it still earn by it."""
    rule = get(s, EarnRule, rule_id, "earn rule")
    old, rule.ends_on = rule.ends_on, _end_day(rule.starts_on, rule.ends_on, on)
    s.flush()
    audit(s, actor=actor, action="loyalty.rule.end", subject=f"earn_rule:{rule_id}", now=now, old=old,
          new=rule.ends_on)
    return rule


def add_promotion(s: Session, name: str, *, position: int, product: str = "*", stations: str = "",
                  starts_on: dt.date, ends_on: dt.date, multiplier_pct: int = 100, bonus_points: int = 0,
                  stop: bool = False, actor: str, now: dt.datetime) -> Promotion:
    if not _NAME.fullmatch(name.strip()):
        raise ConfigError("name must be 1 to 100 characters, no control characters or |", key="name")
    where = tuple(x.strip() for x in stations.split(",") if x.strip())
    if len(",".join(where)) > 500 or not all(_STATION.fullmatch(x) for x in where):
        raise ConfigError("stations: station ids or group:NAME, comma-separated", key="stations")
    if not 0 <= position < 2**31:
        raise ConfigError("position must be a whole number from 0", key="position")
    loyalty.Promotion(name, position, _product(s, product), where, starts_on, ends_on, multiplier_pct,
                      bonus_points, stop)
    promo = Promotion(name=name.strip(), position=position, product=product.strip(), stations=",".join(where),
                      starts_on=starts_on, ends_on=ends_on, multiplier_pct=multiplier_pct,
                      bonus_points=bonus_points, stop=stop, status="active")
    s.add(promo)
    s.flush()
    audit(s, actor=actor, action="loyalty.promo.add", subject=f"promotion:{promo.id}", now=now,
          name=promo.name, position=position, product=promo.product, stations=promo.stations,
          starts_on=starts_on, ends_on=ends_on, multiplier_pct=multiplier_pct, bonus_points=bonus_points,
          stop=stop)
    return promo


def end_promotion(s: Session, promo_id: int, *, on: dt.date, actor: str, now: dt.datetime) -> Promotion:
    """The promotion's last day becomes `on` (sales up to it, even arriving later, still get it)."""
    promo = get(s, Promotion, promo_id, "promotion")
    old = promo.ends_on
    promo.ends_on = _end_day(promo.starts_on, promo.ends_on, on)
    promo.status = "ended"
    s.flush()
    audit(s, actor=actor, action="loyalty.promo.end", subject=f"promotion:{promo_id}", now=now, old=old,
          new=promo.ends_on)
    return promo


def set_tier(s: Session, name: str, *, rank: int, multiplier_pct: int, min_spend_cents: int, actor: str,
             now: dt.datetime) -> Tier:
    """Add or change a tier. Rank 0 is the base tier (min spend 0); ranks are unique."""
    loyalty.Programme(tiers={name: multiplier_pct})        # the name's form and the percent's range
    if not 0 <= rank <= 100 or not 0 <= min_spend_cents <= 10**12 or (rank == 0) != (min_spend_cents == 0):
        raise ConfigError("rank 0 to 100, min spend from 0; rank 0 (and only it) has min spend 0", key="rank")
    other = s.scalar(select(Tier).where(Tier.rank == rank, Tier.name != name))
    if other is not None:
        raise ConfigError("another tier has this rank", key="rank", tier=other.name)
    below = s.scalar(select(func.count()).select_from(Tier).where(
        Tier.name != name, ((Tier.rank < rank) & (Tier.min_spend_cents >= min_spend_cents))
        | ((Tier.rank > rank) & (Tier.min_spend_cents <= min_spend_cents))))
    if below:
        raise ConfigError("a higher rank needs a higher min spend", key="min_spend")
    tier = s.get(Tier, name)
    old = None if tier is None else (tier.rank, tier.multiplier_pct, tier.min_spend_cents)
    if tier is None:
        tier = Tier(name=name, rank=rank, multiplier_pct=multiplier_pct, min_spend_cents=min_spend_cents)
        s.add(tier)
    else:
        tier.rank, tier.multiplier_pct, tier.min_spend_cents = rank, multiplier_pct, min_spend_cents
    s.flush()
    audit(s, actor=actor, action="loyalty.tier.set", subject=f"tier:{name}", now=now, old=old, rank=rank,
          multiplier_pct=multiplier_pct, min_spend_cents=min_spend_cents)
    return tier


def set_setting(s: Session, key: str, value: int | str, *, actor: str, now: dt.datetime) -> int:
    old, new = loyalty_settings.put(s, key, value)
    audit(s, actor=actor, action="loyalty.setting", subject=f"setting:{key}", now=now, old=old, new=new)
    return new
