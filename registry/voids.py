"""A stored sale voided by an operator (a return, a sale made in error): what it booked is undone by new
movements, once.

The wallet's debit is reversed (registry.fleet.ledger.reverse), the sale leaves its card's and account's
usage of every period, and the points it earned are taken back (registry.loyalty.points.reverse_earn: what
is left of its award, then the oldest, a debt for the rest). The sale itself stays, flagged "voided", so
reports still show it and a resend of it by its terminal is a duplicate, never a second sale. Nothing
commits here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from contracts.errors import ConfigError
from registry.fleet import ledger, usage
from registry.fleet.admin import audit, need_reason
from registry.loyalty import points
from registry.models import Account, Movement, Transaction

__all__ = ["VOIDED", "Voided", "void_sale"]

VOIDED = "voided"


@dataclass(frozen=True)
class Voided:
    sale_id: str
    money: tuple[Movement, ...]          # the reversals of its wallet debits
    points: Movement | None              # the reversal of its points, None when it earned none
    again: bool                          # voided before: nothing new


def _claim(s: Session, tx: Transaction) -> bool:
    """Flag the sale voided unless it is already: one conditional UPDATE, so of two voids at once (a sale
    without an account takes no account lock) exactly one finds the row unflagged and books usage and audit
    (PostgreSQL re-reads the row the other committed; SQLite lets one writer in at a time)."""
    marked = "," + Transaction.flags + ","
    done = s.execute(update(Transaction).where(Transaction.id == tx.id, marked.not_like(f"%,{VOIDED},%"))
                     .values(flags=case((Transaction.flags == "", VOIDED),
                                        else_=Transaction.flags + f",{VOIDED}"))
                     .execution_options(synchronize_session=False))
    s.refresh(tx)
    return getattr(done, "rowcount", 0) == 1          # a CursorResult (Session.execute types a Result)


def void_sale(s: Session, sale_id: str, *, actor: str, reason: str, now: dt.datetime) -> Voided:
    """Undo what the stored sale `sale_id` booked; the same void twice books once."""
    reason = need_reason(reason)
    tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale_id))
    if tx is None:
        raise ConfigError("no stored sale has that id", key="sale")
    if tx.account_id is not None:
        ledger.lock_account(s, tx.account_id)          # authorizations of the account wait for the void
    again = not _claim(s, tx)                          # after the lock; tx is read again after it
    debits = s.scalars(select(Movement).where(Movement.sale_id == sale_id, Movement.kind == "sale")
                       .order_by(Movement.id)).all()
    money = tuple(ledger.reverse(s, m.key, at=now, actor=actor, reason=reason) for m in debits)
    if not again and debits and tx.account_id is not None and not tx.held:
        account = s.get(Account, tx.account_id)
        usage.record(s, account_id=tx.account_id, card_id=usage.newest_card(s, tx.card_id)
                     if tx.card_id is not None else None, tz=account.timezone if account else "UTC",
                     at_utc=tx.finished_at, amount_cents=-tx.amount_cents, volume_cl=-tx.volume_cl, count=-1)
    taken = points.reverse_earn(s, sale_id, now, actor)
    if not again:
        audit(s, actor=actor, action="sale.void", subject=f"sale:{sale_id}", now=now, reason=reason,
              money=[m.amount for m in money], points=taken.amount if taken is not None else 0)
    return Voided(sale_id, money, taken, again)
