"""What a card issued on one wallet before fleet accounts (r0007) still obeys: that wallet's own monthly litre
limit, counted as it always was (the wallet's sales this calendar month, UTC, plus its open holds)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.fleet import rules
from registry.models import Authorization, Card, Transaction, Wallet

__all__ = ["legacy_limit", "wallet_usage_cl"]


def _month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def wallet_usage_cl(session: Session, wallet_id: int, now: dt.datetime) -> int:
    """Litres (cl) this calendar month: settled sales plus open, unexpired authorizations.

    A held sale (registry.checks) is not counted: its figures cannot be trusted, in either direction; nor
    is a voided one (registry.voids).
    """
    settled = session.scalar(select(func.coalesce(func.sum(Transaction.volume_cl), 0)).where(
        Transaction.wallet_id == wallet_id, Transaction.held.is_(False),
        Transaction.finished_at >= _month_start(now), ~Transaction.flags.contains("voided")))
    held = session.scalar(select(func.coalesce(func.sum(Authorization.allowed_cl), 0)).where(
        Authorization.wallet_id == wallet_id, Authorization.status == "open",
        Authorization.expires_at > now))
    return int(settled or 0) + int(held or 0)


def legacy_limit(session: Session, card: Card, now: dt.datetime) -> list[rules.LimitView]:
    """The monthly litre limit of the one wallet a card was issued on, when it has one; else nothing."""
    wallet = session.get(Wallet, card.wallet_id) if card.wallet_id is not None else None
    if wallet is None or not wallet.monthly_limit_cl:
        return []
    return [rules.LimitView("card", "month", "volume", wallet.monthly_limit_cl,
                            wallet_usage_cl(session, wallet.id, now))]
