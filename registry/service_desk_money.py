"""Service operations that put money on a card at an attendant's request: cash top-ups and points
converted to credit (registry.service_desk). Both book under the request id, so a request sent again
books nothing more and is audited once; both flag the attendant crediting an account of their own card
(registry.loyalty.rewards.flag_own_card), done all the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from contracts.cards import mask_number
from contracts.errors import ConfigError
from contracts.service_messages import ServiceReason as R
from registry import attendants, prepaid
from registry.fleet import ledger
from registry.fleet.rules import local_time
from registry.loyalty import convert, history, points, rewards
from registry.loyalty.points import PointsError
from registry.models import Account, Card, LoyaltyMember, Movement, Wallet
from registry.service_desk_ask import Ask, Refused

__all__ = ["loyalty_convert", "topup"]


def _card(a: Ask, number: str) -> Card:
    """The active card of an account with that number."""
    card = a.s.scalar(select(Card).where(Card.token == a.keys.token(number)))
    if card is None or card.status != "active" or card.account_id is None:
        raise Refused(R.UNKNOWN_CARD, "card unknown or not active")
    return card


def _where(a: Ask) -> dict[str, Any]:
    return {"terminal": a.device.id, "station": a.req["station"]}


def topup(a: Ask) -> dict[str, Any]:
    attendant = a.attendant(booked=f"topup:{a.req['request_id']}")     # prepaid.topup's key
    number = a.opened("card_sealed")
    card = _card(a, number)
    amount = a.req["amount_cents"]
    try:
        done = prepaid.topup(a.s, amount, key=a.req["request_id"], actor=f"attendant:{attendant}", now=a.now,
                             card_id=card.id, wallet_id=a.req.get("wallet"), reason="cash at the terminal")
    except (ConfigError, prepaid.PrepaidError, ledger.LedgerError):
        raise Refused(R.NOT_ALLOWED, "top-up refused") from None
    wallet = done.paid.wallet_id
    if not done.again:
        rewards.flag_own_card(a.s, [card.account_id or 0], attendant, now=a.now,
                              detail=f"cash top-up of {amount} cents on wallet {wallet}")
        attendants.audit_action(a.s, attendant, "topup", f"wallet:{wallet}",
                                {"amount_cents": amount, **_where(a)}, a.now)
    bonus = done.bonus.amount if done.bonus is not None else 0
    return {"masked": mask_number(number), "paid_cents": done.paid.amount, "bonus_cents": bonus,
            "balance_cents": (done.bonus or done.paid).balance_after}


def _credit(a: Ask, card: Card) -> Wallet:
    """The card's account's only active money wallet, unexpired (the account kinds convert takes are
    convert's to say); a card with several names no one of them: refused."""
    account = a.s.get(Account, card.account_id)
    wallets = list(a.s.scalars(select(Wallet).where(Wallet.account_id == card.account_id,
                                                    Wallet.unit == "money", Wallet.status == "active")))
    if account is None or len(wallets) != 1:
        raise Refused(R.NOT_ALLOWED, "the card has no one money credit to convert to")
    wallet = wallets[0]
    if wallet.expires_on is not None and local_time(a.now, account.timezone).date() > wallet.expires_on:
        raise Refused(R.NOT_ALLOWED, "the credit has expired: money put on it would be lost")
    return wallet


def _refused(exc: Exception) -> Refused:
    text = str(exc)
    reason = (R.INSUFFICIENT_POINTS if "not enough" in text else R.POOLED if "pooled" in text
              else R.NOT_ALLOWED)
    return Refused(reason, "conversion refused")


def loyalty_convert(a: Ask) -> dict[str, Any]:
    """Points of the loyalty card (card_sealed) turned into credit on the money card (target_sealed) by
    the conversion table, once per request id (registry.loyalty.convert, which flags an own card)."""
    attendant = a.attendant(booked=convert.CONVERT + a.req["request_id"])
    try:
        account = history.loyalty_account(a.s, a.keys.token(a.opened("card_sealed")))
    except PointsError:
        raise Refused(R.UNKNOWN_CARD, "card earns on no loyalty account") from None
    member = a.s.get(LoyaltyMember, account)
    if member is not None and member.pool_account_id is not None:
        raise Refused(R.POOLED, "pooled card")
    number = a.opened("target_sealed")
    card = _card(a, number)
    target = card.account_id or 0
    for each in sorted({account, target}):      # convert's own order: two conversions never deadlock
        ledger.lock_account(a.s, each)
    key = a.req["request_id"]
    booked = a.s.scalars(select(Movement).where(Movement.key == convert.CONVERT + key)).first()
    wallet = booked.wallet_id if booked is not None else _credit(a, card).id
    try:
        done = convert.convert(a.s, account=account, points=a.req["points"], wallet=wallet, key=key,
                               now=a.now, attendant=attendant)
    except (rewards.RewardError, ConfigError, PointsError, ledger.LedgerError) as exc:
        raise _refused(exc) from None
    if booked is None:
        attendants.audit_action(a.s, attendant, "convert", f"wallet:{wallet}",
                                {"points": done.points, "credit_cents": done.cents, "account": account,
                                 **_where(a)}, a.now)
    return {"masked": mask_number(number), "points": done.points, "credit_cents": done.cents,
            "balance": points.points_wallet(a.s, account).balance}
