"""Closing a wallet or a whole account, for good. Nothing is lost on the way: a wallet closes empty (its
balance moved or corrected to 0 first, no authorization holding on it), and an account's cards still
usable are withdrawn, so they land on the stop-list terminals check offline. Audited; the caller commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.fleet import ledger
from registry.fleet.admin import FleetError, audit, get, need_reason
from registry.fleet.cards import move
from registry.models import Account, Card, Wallet

__all__ = ["close_account", "close_wallet"]

USABLE = ("new", "active", "temp_blocked")


def _close(s: Session, wallet: Wallet, *, actor: str, reason: str, now: dt.datetime) -> None:
    if wallet.balance != 0:
        raise FleetError("a wallet closes empty: transfer or correct its balance to 0 first",
                         wallet=wallet.id, balance=wallet.balance)
    if ledger.open_holds(s, wallet.id, now):
        raise FleetError("an open authorization holds on the wallet: close it after the sale",
                         wallet=wallet.id)
    wallet.status = "closed"
    audit(s, actor=actor, action="wallet.close", subject=f"wallet:{wallet.id}", now=now, reason=reason)


def close_wallet(s: Session, wallet_id: int, *, actor: str, reason: str, now: dt.datetime) -> Wallet:
    reason = need_reason(reason)
    wallet = get(s, Wallet, wallet_id, "wallet")
    ledger.lock_account(s, wallet.account_id)
    s.refresh(wallet)
    if wallet.status == "closed":
        raise FleetError("the wallet is closed already", wallet=wallet_id)
    _close(s, wallet, actor=actor, reason=reason, now=now)
    return wallet


def close_account(s: Session, account_id: int, *, actor: str, reason: str, now: dt.datetime) -> int:
    """Close the account, its open wallets (each must be empty) and withdraw its usable cards; how many
    cards were withdrawn."""
    reason = need_reason(reason)
    get(s, Account, account_id, "account")
    account = ledger.lock_account(s, account_id)
    if account.status == "closed":
        raise FleetError("the account is closed already", account=account_id)
    query = select(Wallet).where(Wallet.account_id == account_id, Wallet.status != "closed")
    for wallet in s.scalars(query).all():
        s.refresh(wallet)
        _close(s, wallet, actor=actor, reason=reason, now=now)
    withdrawn = 0
    for card in s.scalars(select(Card).where(Card.account_id == account_id, Card.status.in_(USABLE))).all():
        move(s, card.id, "withdraw", actor=actor, reason=reason, now=now)
        withdrawn += 1
    account.status = "closed"
    audit(s, actor=actor, action="account.close", subject=f"account:{account_id}", now=now, reason=reason,
          cards_withdrawn=withdrawn)
    return withdrawn
