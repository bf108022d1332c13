"""The fleet ledger: every change of a wallet's balance is an append-only Movement, idempotent by its key.

A wallet's balance is the sum of its movements, kept with each one (`post`); holds reserve what open
authorizations may still take. Nothing here commits: the caller commits, after `lock_account` when it
authorizes or settles. Movements are never updated or deleted; a mistake is undone by a new movement.

Idempotency across sessions: `post` returns the movement already booked under a key. Two sessions booking
the same new key at once both find none; the unique index on movements.key then refuses the second insert
(IntegrityError at its flush or commit). The caller rolls back and retries the whole step, which then finds
the first one's movement.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from contracts.errors import ForecourtError
from registry.fleet import rules
from registry.models import Account, Hold, Movement, Wallet

__all__ = [
    "KINDS",
    "LedgerError",
    "available",
    "check",
    "correct",
    "credit",
    "expire",
    "hold",
    "lock_account",
    "open_holds",
    "post",
    "release",
    "reverse",
    "topup",
    "transfer",
]

# bonus (issue 15): a prepaid or gift card's top-up bonus, booked apart from the paid amount
# earn, redeem (issue 15): loyalty points awarded and spent (registry.loyalty.points)
# chip_sale (issue 18): a debit the card signed in a purchase record (registry.purse.records)
KINDS = ("topup", "sale", "refund", "reversal", "expiry", "transfer_in", "transfer_out", "correction",
         "bonus", "earn", "redeem", "chip_sale")
KEY_LENGTH = 100            # movements.key is String(100): PostgreSQL refuses a longer one
REVERSAL = "reversal:"      # a reversal's key: this prefix and the original's key
MAX_AMOUNT = 10**13         # far above any real movement, far below the BIGINT balance it adds to


class LedgerError(ForecourtError):
    """A movement, hold or transfer the ledger refuses (the context names the wallet or key)."""


def _check_key(key: str) -> None:
    if not key or len(key) > KEY_LENGTH:
        raise LedgerError(f"movement key must be 1 to {KEY_LENGTH} characters", length=len(key))


def _amount(amount: int, *, positive: bool = False) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise LedgerError("amount must be a whole number of the wallet's unit")
    if abs(amount) > MAX_AMOUNT:
        raise LedgerError("amount is out of range", limit=MAX_AMOUNT)
    if positive and amount <= 0:
        raise LedgerError("amount must be above zero", amount=amount)
    return amount


def _existing(s: Session, key: str) -> Movement | None:
    return s.scalars(select(Movement).where(Movement.key == key)).one_or_none()


def post(s: Session, wallet: Wallet, kind: str, amount: int, *, key: str, at: dt.datetime,
         sale_id: str | None = None, auth_id: str | None = None, actor: str = "",
         reason: str = "") -> Movement:
    """Book `amount` (signed, in the wallet's unit) on `wallet` once under `key`; the movement.

    The same key booked again with the same wallet, kind and amount returns the first movement and changes
    nothing; with anything else it is a LedgerError. post never refuses a debit: a sale that happened is
    booked even when it overdraws the wallet (the helpers below check what they book).
    """
    if kind not in KINDS:
        raise LedgerError(f"movement kind must be one of {', '.join(KINDS)}", kind=kind)
    _check_key(key)
    _amount(amount)
    found = _existing(s, key)
    if found is not None:
        if (found.wallet_id, found.kind, found.amount) != (wallet.id, kind, amount):
            raise LedgerError("movement key already booked with another wallet, kind or amount",
                              key=key, wallet=found.wallet_id)
        return found
    # the balance moves in the database (a row lock on PostgreSQL, the write lock on SQLite, both held to
    # the end of the transaction) and is read back: a wallet object loaded before another session's
    # commit cannot write a stale balance. No RETURNING: SQLite has it only from 3.35.
    s.execute(update(Wallet).where(Wallet.id == wallet.id).values(balance=Wallet.balance + amount)
              .execution_options(synchronize_session=False))
    balance = s.scalar(select(Wallet.balance).where(Wallet.id == wallet.id))
    if balance is None:
        raise LedgerError("no such wallet", wallet=wallet.id)
    set_committed_value(wallet, "balance", balance)
    movement = Movement(key=key, wallet_id=wallet.id, kind=kind, amount=amount, balance_after=balance,
                        at=at, sale_id=sale_id, auth_id=auth_id, actor=actor[:64], reason=reason[:200])
    s.add(movement)
    s.flush()           # a key booked meanwhile by another session fails here or at commit (see above)
    return movement


def open_holds(s: Session, wallet_id: int, now: dt.datetime) -> int:
    """What open authorizations hold on the wallet: holds not released and not expired at `now`."""
    held = s.scalar(select(func.coalesce(func.sum(Hold.amount), 0))
                    .where(Hold.wallet_id == wallet_id, Hold.released.is_(False), Hold.expires_at > now))
    return int(held or 0)


def credit(wallet: Wallet) -> int:
    """How far the balance may go below zero: a post-paid wallet's credit line, nothing for prepaid."""
    return wallet.credit_limit if wallet.mode == "postpaid" else 0


def available(s: Session, wallet: Wallet, now: dt.datetime) -> int:
    """What the wallet can still pay at `now`: balance, plus its credit line, less its open holds."""
    return wallet.balance + credit(wallet) - open_holds(s, wallet.id, now)


def _fresh(s: Session, wallet: Wallet) -> Wallet:
    """The wallet with its balance read again (an operator's object may predate the account lock)."""
    s.refresh(wallet, ["balance", "credit_limit", "mode", "status"])
    return wallet


def _can_take(s: Session, wallet: Wallet, amount: int, now: dt.datetime) -> None:
    """A debit the helpers book must leave the wallet's available amount at zero or above."""
    if amount < 0 and available(s, _fresh(s, wallet), now) + amount < 0:
        raise LedgerError("not enough available in the wallet", wallet=wallet.id)


def _active(wallet: Wallet) -> None:
    if wallet.status != "active":
        raise LedgerError("wallet is closed", wallet=wallet.id)


def hold(s: Session, auth_id: str, wallet_id: int, amount: int, expires_at: dt.datetime, *,
         now: dt.datetime | None = None) -> Hold:
    """Reserve `amount` of the wallet for an authorization until it completes or `expires_at`.

    Holding the same (authorization, wallet) again with the same amount returns the first hold. Given
    `now`, a hold above what the wallet has available is refused (authorize computes its allowance from
    `available` under the account lock, so this is a guard).
    """
    _amount(amount, positive=True)
    found = s.get(Hold, (auth_id, wallet_id))
    if found is not None:
        if found.amount != amount or found.released:
            raise LedgerError("authorization already holds another amount on this wallet", wallet=wallet_id)
        return found
    if now is not None:
        wallet = s.get(Wallet, wallet_id)
        if wallet is None:
            raise LedgerError("no such wallet", wallet=wallet_id)
        if amount > available(s, wallet, now):
            raise LedgerError("not enough available in the wallet", wallet=wallet_id)
    made = Hold(auth_id=auth_id, wallet_id=wallet_id, amount=amount, expires_at=expires_at, released=False)
    s.add(made)
    s.flush()
    return made


def release(s: Session, auth_id: str) -> int:
    """Mark every hold of the authorization released (kept, never deleted); how many were open."""
    held = list(s.scalars(select(Hold).where(Hold.auth_id == auth_id, Hold.released.is_(False))))
    for each in held:
        each.released = True
    s.flush()
    return len(held)


def topup(s: Session, wallet: Wallet, amount: int, *, key: str, at: dt.datetime, actor: str,
          reason: str = "") -> Movement:
    """Add `amount` (> 0, wallet unit) to an active wallet."""
    _amount(amount, positive=True)
    if _existing(s, key) is None:
        _active(wallet)
    return post(s, wallet, "topup", amount, key=key, at=at, actor=actor, reason=reason)


def correct(s: Session, wallet: Wallet, amount: int, *, key: str, at: dt.datetime, actor: str,
            reason: str) -> Movement:
    """An operator's correction (signed, not zero); one that would take the wallet's available amount
    below zero is refused, as a sale beyond it would be."""
    if _amount(amount) == 0:
        raise LedgerError("a correction must change the balance", wallet=wallet.id)
    if _existing(s, key) is None:
        _can_take(s, wallet, amount, at)
    return post(s, wallet, "correction", amount, key=key, at=at, actor=actor, reason=reason)


def transfer(s: Session, source: Wallet, target: Wallet, amount: int, *, key: str, at: dt.datetime,
             actor: str, reason: str = "") -> tuple[Movement, Movement]:
    """Move `amount` between two active wallets of the same unit: movements key+":out" and key+":in".

    Only the source's own funds move (balance less open holds): a post-paid credit line is not money to
    hand to another wallet.
    """
    _amount(amount, positive=True)
    out_key, in_key = key + ":out", key + ":in"
    _check_key(out_key)
    if source.id == target.id:
        raise LedgerError("cannot transfer a wallet to itself", wallet=source.id)
    if source.unit != target.unit:
        raise LedgerError("wallets of different units", source=source.id, target=target.id)
    if _existing(s, out_key) is None:
        _active(_fresh(s, source))
        _active(_fresh(s, target))
        if source.balance - open_holds(s, source.id, at) < amount:
            raise LedgerError("not enough funds in the wallet", wallet=source.id)
    out = post(s, source, "transfer_out", -amount, key=out_key, at=at, actor=actor, reason=reason)
    return out, post(s, target, "transfer_in", amount, key=in_key, at=at, actor=actor, reason=reason)


def _local_date(s: Session, wallet: Wallet, now: dt.datetime) -> dt.date:
    account = s.get(Account, wallet.account_id)
    return rules.local_time(now, account.timezone if account is not None else "UTC").date()


def expire(s: Session, wallet: Wallet, *, key: str, now: dt.datetime, actor: str = "") -> Movement | None:
    """Take a prepaid wallet's positive balance to zero once its expires_on day (account's time zone)
    has passed; None when there is nothing to take.

    What open authorizations still hold stays until they settle (they were granted while the wallet was
    valid); a later sweep, under a new key, takes what they leave.
    """
    found = _existing(s, key)
    if found is not None:
        if (found.wallet_id, found.kind) != (wallet.id, "expiry"):
            raise LedgerError("movement key already booked with another wallet or kind", key=key)
        return found
    if wallet.mode != "prepaid" or wallet.expires_on is None:
        return None
    if _local_date(s, wallet, now) <= wallet.expires_on:
        return None
    amount = wallet.balance - open_holds(s, wallet.id, now)
    if amount <= 0:
        return None
    return post(s, wallet, "expiry", -amount, key=key, at=now, actor=actor, reason="wallet expired")


def reverse(s: Session, original_key: str, *, at: dt.datetime, actor: str, reason: str = "") -> Movement:
    """Book the opposite of the movement under `original_key`, once (key "reversal:" + original_key).

    A reversal is not reversed again; one that takes money back (a top-up's) must leave the wallet's
    available amount at zero or above.
    """
    key = REVERSAL + original_key
    _check_key(key)
    original = _existing(s, original_key)
    if original is None:
        raise LedgerError("no movement under that key", key=original_key)
    if original.kind == "reversal":
        raise LedgerError("a reversal is not reversed; book a correction", key=original_key)
    wallet = s.get(Wallet, original.wallet_id)
    if wallet is None:          # movements.wallet_id is a foreign key: only a broken database
        raise LedgerError("movement's wallet is gone", key=original_key)
    if _existing(s, key) is None:
        _can_take(s, wallet, -original.amount, at)
    return post(s, wallet, "reversal", -original.amount, key=key, at=at, sale_id=original.sale_id,
                auth_id=original.auth_id, actor=actor, reason=reason)


def lock_account(s: Session, account_id: int) -> Account:
    """Take the account's lock for this transaction and return the account, read after it.

    UPDATE accounts SET auth_seq = auth_seq + 1: a row lock on PostgreSQL, the database's write lock on
    SQLite; either is held until commit or rollback, so authorizations and settlements of one account
    take turns. Call it FIRST in the transaction: rows read before it may be stale.
    """
    s.execute(update(Account).where(Account.id == account_id).values(auth_seq=Account.auth_seq + 1)
              .execution_options(synchronize_session=False))
    account = s.scalars(select(Account).where(Account.id == account_id)
                        .execution_options(populate_existing=True)).one_or_none()
    if account is None:
        raise LedgerError("no such account", account=account_id)
    return account


def check(s: Session) -> list[tuple[int, int, int]]:
    """Wallets whose balance is not the sum of their movements: (wallet_id, balance, sum); [] when sound."""
    sums = (select(Movement.wallet_id, func.sum(Movement.amount).label("total"))
            .group_by(Movement.wallet_id).subquery())
    rows = s.execute(select(Wallet.id, Wallet.balance, func.coalesce(sums.c.total, 0))
                     .outerjoin(sums, sums.c.wallet_id == Wallet.id).order_by(Wallet.id))
    return [(wid, balance, int(total)) for wid, balance, total in rows if balance != int(total)]
