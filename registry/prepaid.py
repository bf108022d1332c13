"""Prepaid, gift and purpose-restricted cards on the fleet ledger (issue 15): issue, top up with a bonus,
refund what was paid in and not spent, show.

A prepaid or gift card is an Account (kind "prepaid" or "gift", no customer needed) with one or more
prepaid money wallets ("credits"), each allowing its products ("" any, "group:fuel", "group:shop", ...)
and stations, and a fleet Card on it: registry.fleet.authorize and settle spend them like a fleet
card's wallets, so a shop-only credit is declined at a fuel nozzle (product_not_allowed) and a card with a
fuel and a shop credit buys fuel from the fuel credit only. The hourly fleet sweep empties a credit past
its expires_on (registry.fleet.sweep: prepaid wallets with an expiry date).

Decisions where the issue is silent:
- Credits expire on the last day of the card's expiry month unless told otherwise; a card sold over the
  counter is active at once.
- A top-up goes to the account's only active credit, or to the one named. Its bonus is booked on the same
  credit (so it is restricted as the paid money is), kind "bonus", key "bonus:{key}" beside
  "topup:{key}": both or neither, in one transaction; the same key again books nothing.
- A card spends what was paid in first and its bonus last: what a refund pays back is what is left of the
  paid money (never more than the balance less open holds, never more than paid in less refunded), so a
  bonus is never cashed by spending it and refunding the money paid. A positive correction is not
  refundable either. A credit past its expiry pays nothing back (it is forfeited to the sweep).
- Paid in is only a "topup" movement keyed "topup:" (a cashier's top-up here, the service desk's, or
  `fleet wallet topup` with its payment's reference). Other "topup" movements are credit that was never
  cash, spent like a correction and never paid back: points converted ("convert:", registry.loyalty
  .convert) and a seed's opening balance ("seed-topup:", whose origin the registry does not know: an
  operator who knows it was paid books it as a top-up with its payment's reference instead).
- A refund pays out every credit's refundable amount (kind "refund", key "refund:{key}:{wallet}") and
  leaves the card open with what is not refundable; gift cards are refused (PrepaidError).
Nothing commits here: the caller does, after the account's lock is taken (registry.fleet.ledger).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.errors import ConfigError, ForecourtError
from registry.fleet import admin, ledger, rules
from registry.fleet.cards import IssuedCard, issue_card
from registry.keys import RegistryKeys
from registry.models import Account, Card, Customer, Movement, Product, Wallet
from registry.prepaid_bonus import KINDS, best_bonus, offers_on
from registry.purse_models import chip_shadows

__all__ = ["KINDS", "Credit", "CreditView", "Issued", "PrepaidError", "Refunded", "Split", "Topped",
           "account_for", "credits", "issue", "refund", "reverse_topup", "split", "topup"]

MAX_CREDITS = 8
PAID = "topup:"                     # the key of money paid in (refundable): this module's and fleet admin's
KEY_SIZE = admin.KEY_SIZE           # a cashier's or payment's reference, as a fleet top-up's


class PrepaidError(ForecourtError):
    """An operation a prepaid or gift card does not allow (a gift card refunded, a card of another kind)."""


@dataclass(frozen=True)
class Credit:
    """One credit to issue: its products ("" any; "group:NAME" a product group) and stations ("" any)."""

    products: str = ""
    stations: str = ""
    name: str = ""


@dataclass(frozen=True)
class Issued:
    account_id: int
    card: IssuedCard
    wallet_ids: tuple[int, ...]


@dataclass(frozen=True)
class Topped:
    paid: Movement
    bonus: Movement | None
    again: bool                     # the key was booked before: nothing new


@dataclass(frozen=True)
class Refunded:
    movements: tuple[Movement, ...]
    again: bool

    @property
    def cents(self) -> int:
        return -sum(m.amount for m in self.movements)


@dataclass(frozen=True)
class Split:
    """A credit's balance in what may be paid back (refundable) and what may only be spent (kept)."""

    paid_in: int
    bonus_in: int
    refunded: int
    refundable: int
    kept: int


def split(*, paid_in: int, bonus_in: int, refunded: int, balance: int) -> Split:
    """Pure: the paid money is spent first, then the bonus; what is left of the paid money (within the
    balance) is refundable. `paid_in` and `bonus_in` are net of their reversals, `refunded` >= 0.

    >>> split(paid_in=100_00, bonus_in=10_00, refunded=0, balance=110_00).refundable   # nothing spent
    10000
    >>> split(paid_in=100_00, bonus_in=10_00, refunded=0, balance=80_00).refundable    # 30.00 spent
    7000
    >>> split(paid_in=100_00, bonus_in=10_00, refunded=0, balance=5_00).refundable     # into the bonus
    0
    """
    used = max(0, paid_in + bonus_in - refunded - balance)        # sales, expiry, corrections, net
    refundable = max(0, min(paid_in - refunded - used, balance))
    return Split(paid_in, bonus_in, refunded, refundable, balance - refundable)


def _split(s: Session, wallet: Wallet) -> Split:
    """The wallet's split from its movements (reversals counted with what they undo). Paid in is only a
    "topup" movement keyed "topup:" (PAID): see the module's decisions."""
    def total(kind: str, prefix: str) -> int:
        own = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                       .where(Movement.wallet_id == wallet.id, Movement.kind == kind,
                              Movement.key.startswith(prefix, autoescape=True)))
        undone = s.scalar(select(func.coalesce(func.sum(Movement.amount), 0))
                          .where(Movement.wallet_id == wallet.id, Movement.kind == "reversal",
                                 Movement.key.startswith(ledger.REVERSAL + prefix, autoescape=True)))
        return int(own or 0) + int(undone or 0)
    return split(paid_in=total("topup", PAID), bonus_in=total("bonus", "bonus:"),
                 refunded=-total("refund", "refund:"), balance=wallet.balance)


def _month_end(expiry: str) -> dt.date:
    year, month = 2000 + int(expiry[:2]), int(expiry[2:])
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def _check_credits(s: Session, given: Sequence[Credit]) -> None:
    if not 1 <= len(given) <= MAX_CREDITS:
        raise ConfigError(f"a card holds 1 to {MAX_CREDITS} credits", key="credits")
    groups = set(s.scalars(select(Product.group).distinct()))
    for credit in given:
        for kind, text in rules.check_products(credit.products):
            if kind == "group" and text[6:] not in groups:
                raise ConfigError("no product is in that group", key="products", item=text[:40])


def issue(s: Session, keys: RegistryKeys, *, kind: str, number: str, expiry: str, medium: str = "chip",
          pin: str | None = None, credits: Sequence[Credit] = (Credit(),), expires_on: dt.date | None = None,
          customer_id: int | None = None, name: str = "", timezone: str = "UTC", actor: str,
          now: dt.datetime) -> Issued:
    """A new prepaid or gift card: its account, its credits (empty, prepaid money wallets) and the card,
    active. ConfigError for a bad value (a known number, an unknown product group, a past expiry)."""
    if kind not in KINDS:
        raise ConfigError(f"a card kind is {' or '.join(KINDS)}", key="kind")
    if customer_id is not None:
        admin.get(s, Customer, customer_id, "customer")
    today = rules.local_time(now, timezone).date()               # ConfigError for an unknown zone
    _check_credits(s, credits)
    if len(expiry) != 4 or not expiry.isdigit() or not 1 <= int(expiry[2:]) <= 12:
        raise ConfigError("expiry must be YYMM", key="expiry")
    last = expires_on if expires_on is not None else _month_end(expiry)
    if last < today:
        raise ConfigError("the credit's last day has passed", key="expires_on")
    name = name.strip() or f"{kind} card"
    if len(name) > 200 or not name.isprintable():
        raise ConfigError("name must be 1 to 200 printable characters", key="name")
    account = Account(name=name, kind=kind,
                      customer_id=customer_id, status="active", prompts="", timezone=timezone, auth_seq=0)
    s.add(account)
    s.flush()
    wallets = [admin.add_wallet(s, account.id, unit="money", mode="prepaid", products=c.products,
                                stations=c.stations, expires_on=last, name=c.name, actor=actor, now=now)
               for c in credits]
    card = issue_card(s, keys, account.id, number, medium=medium, expiry=expiry, pin=pin, actor=actor,
                      now=now, activate=True)
    admin.audit(s, actor=actor, action=f"{kind}.issue", subject=f"account:{account.id}", now=now,
                card=card.id, masked=card.masked, wallets=[w.id for w in wallets], expires_on=last,
                customer=customer_id)
    return Issued(account.id, card, tuple(w.id for w in wallets))


def account_for(s: Session, *, card_id: int | None = None, account_id: int | None = None) -> Account:
    """The prepaid or gift account of a card or named as such; one of the two is given."""
    if (card_id is None) == (account_id is None):
        raise ConfigError("name a card or an account", key="card")
    if card_id is not None:
        card = admin.get(s, Card, card_id, "card")
        if card.account_id is None:
            raise PrepaidError("the card is not a prepaid or gift card", card=card_id)
        account_id = card.account_id
    account = admin.get(s, Account, account_id, "account")
    if account.kind not in KINDS:
        raise PrepaidError("not a prepaid or gift card's account", account=account.id, kind=account.kind)
    return account


def _key(key: str) -> str:
    if not key.isprintable() or not 0 < len(key) <= KEY_SIZE:
        raise ConfigError(f"a key is 1 to {KEY_SIZE} printable characters", key="key")
    return key


def _found(s: Session, key: str) -> Movement | None:
    return s.scalars(select(Movement).where(Movement.key == key)).one_or_none()


def _usable(s: Session, account: Account, wallet_id: int | None, today: dt.date) -> Wallet:
    """The credit a top-up goes to: the one named, or the account's only active one."""
    active = list(s.scalars(select(Wallet).where(Wallet.account_id == account.id, Wallet.status == "active")
                            .order_by(Wallet.id)))
    if wallet_id is not None:
        active = [w for w in active if w.id == wallet_id]
        if not active:
            raise ConfigError("no active credit of this card has that id", key="wallet", wallet=wallet_id)
    elif len(active) != 1:
        raise ConfigError("the card has several credits (or none active): name the one to top up",
                          key="wallet", credits=len(active))
    wallet = active[0]
    if wallet.expires_on is not None and today > wallet.expires_on:
        raise PrepaidError("the credit has expired: money put on it would be lost", wallet=wallet.id)
    return wallet


def topup(s: Session, cents: int, *, key: str, actor: str, now: dt.datetime, card_id: int | None = None,
          account_id: int | None = None, wallet_id: int | None = None, reason: str = "") -> Topped:
    """Book `cents` paid ("topup:{key}") and the best bonus in force ("bonus:{key}") on a credit of the
    card, both or neither; the same key again returns what it booked (LedgerError with another amount)."""
    if isinstance(cents, bool) or not 0 < cents <= admin.MAX_AMOUNT:
        raise ConfigError("amount must be more than 0", key="amount")
    key = _key(key)
    account = account_for(s, card_id=card_id, account_id=account_id)
    account = ledger.lock_account(s, account.id)          # first: authorizations of the card wait
    paid_key, bonus_key = f"topup:{key}", f"bonus:{key}"
    paid = _found(s, paid_key)
    if paid is not None:
        owner = s.get(Wallet, paid.wallet_id)
        if (owner is None or owner.account_id != account.id or paid.kind != "topup" or paid.amount != cents
                or wallet_id not in (None, paid.wallet_id)):
            raise ledger.LedgerError("top-up key already booked with another card, credit or amount",
                                     key=paid_key)
        return Topped(paid, _found(s, bonus_key), again=True)
    today = rules.local_time(now, account.timezone).date()
    wallet = _usable(s, account, wallet_id, today)
    extra, offer = best_bonus(cents, offers_on(s, account.kind, today))
    paid = ledger.topup(s, wallet, cents, key=paid_key, at=now, actor=actor, reason=reason)
    bonus = None
    if extra > 0 and offer is not None:
        bonus = ledger.post(s, wallet, "bonus", extra, key=bonus_key, at=now, actor=actor,
                            reason=f"top-up bonus {offer.id}")
    admin.audit(s, actor=actor, action=f"{account.kind}.topup", subject=f"wallet:{wallet.id}", now=now,
                reason=reason.strip(), amount=cents, bonus=extra, offer=offer.id if offer else None,
                movement=paid.id, balance=(bonus or paid).balance_after)
    return Topped(paid, bonus, again=False)


def refund(s: Session, *, key: str, actor: str, reason: str, now: dt.datetime, card_id: int | None = None,
           account_id: int | None = None) -> Refunded:
    """Pay out what every credit of a prepaid card may pay back (split); a gift card is refused. The same
    key again returns what it booked; nothing refundable books nothing."""
    reason, key = admin.need_reason(reason), _key(key)
    account = account_for(s, card_id=card_id, account_id=account_id)
    if account.kind != "prepaid":
        raise PrepaidError("gift card balances are not refundable", account=account.id)
    account = ledger.lock_account(s, account.id)
    wallets = list(s.scalars(select(Wallet).where(Wallet.account_id == account.id,    # a chip wallet's
                                                  Wallet.id.not_in(chip_shadows()))   # value is on the card
                             .order_by(Wallet.id)))
    keys = {w.id: f"refund:{key}:{w.id}" for w in wallets}
    booked = list(s.scalars(select(Movement).where(Movement.key.in_(keys.values())).order_by(Movement.id)))
    if booked:
        return Refunded(tuple(booked), again=True)
    today = rules.local_time(now, account.timezone).date()
    paid: list[Movement] = []
    for wallet in wallets:
        s.refresh(wallet)
        if wallet.status != "active" or (wallet.expires_on is not None and today > wallet.expires_on):
            continue
        amount = min(_split(s, wallet).refundable, wallet.balance - ledger.open_holds(s, wallet.id, now))
        if amount > 0:
            paid.append(ledger.post(s, wallet, "refund", -amount, key=keys[wallet.id], at=now, actor=actor,
                                    reason=reason))
    done = Refunded(tuple(paid), again=False)
    admin.audit(s, actor=actor, action="prepaid.refund", subject=f"account:{account.id}", now=now,
                reason=reason, cents=done.cents, movements=[m.id for m in paid])
    return done


def reverse_topup(s: Session, key: str, *, actor: str, reason: str,
                  now: dt.datetime) -> tuple[Movement, ...]:
    """Undo a top-up and its bonus (a payment charged back, a cashier's mistake): "reversal:topup:{key}"
    and "reversal:bonus:{key}", both or neither, once. Refused (PrepaidError) unless the paid amount is
    still refundable and the bonus still there: money spent or paid out is not taken back twice."""
    reason, key = admin.need_reason(reason), _key(key)
    paid = _found(s, f"topup:{key}")
    wallet = s.get(Wallet, paid.wallet_id) if paid is not None else None
    if paid is None or wallet is None:
        raise ConfigError("no top-up under that key", key="key")
    account_for(s, account_id=wallet.account_id)
    ledger.lock_account(s, wallet.account_id)
    s.refresh(wallet)
    bonus = _found(s, f"bonus:{key}")
    done = _found(s, f"{ledger.REVERSAL}topup:{key}")
    if done is None:
        parts = _split(s, wallet)
        extra = bonus.amount if bonus is not None else 0
        free = wallet.balance - ledger.open_holds(s, wallet.id, now)
        if parts.refundable < paid.amount or parts.kept < extra or free < paid.amount + extra:
            raise PrepaidError("the top-up is spent or paid out in part: book a correction instead",
                               wallet=wallet.id)
    moves = [ledger.reverse(s, m.key, at=now, actor=actor, reason=reason)
             for m in (paid, bonus) if m is not None]
    if done is None:
        admin.audit(s, actor=actor, action="prepaid.reverse_topup", subject=f"wallet:{wallet.id}", now=now,
                    reason=reason, movements=[m.id for m in moves])
    return tuple(moves)


@dataclass(frozen=True)
class CreditView:
    """A credit as `show` lists it (cents)."""

    wallet_id: int
    name: str
    products: str
    stations: str
    expires_on: dt.date | None
    status: str
    balance: int
    available: int
    split: Split


def credits(s: Session, account: Account, now: dt.datetime) -> list[CreditView]:
    """Every credit of the account with its balance, what is available and its split."""
    return [CreditView(w.id, w.name, w.allowed_products, w.stations, w.expires_on, w.status, w.balance,
                       ledger.available(s, w, now), _split(s, w))
            for w in s.scalars(select(Wallet).where(Wallet.account_id == account.id).order_by(Wallet.id))]
