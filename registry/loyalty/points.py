"""Loyalty points on the fleet ledger: awards, spends linked to the awards they use, reversals, and a check.

A points wallet (unit "points") books its movements with registry.fleet.ledger.post, idempotent by key.
Every + movement that can be spent later has a PointAward (`remaining` = what is not used yet); every -
movement takes the oldest awards' remaining first (earned_at, then movement id) and says so in
PointAllocation rows. Reversing an earn may leave the balance below zero: that debt is the part of the
reversal no award covered, and the next points in (an award, a redeem given back) pay it first. So at all
times balance == sum(remaining) - debt, and a debt only exists while no award has points left.

A redeem given back (`reverse_spend`) restores the remaining of the awards it used, with a negative
allocation of the reversal on each, rather than new award rows: the points keep their age (expiry stays
fair) and a station's granted points (PointAward, its settlement) are not counted twice.

Nothing here commits; the caller does. Each function writes its wallet's row first (a row lock on
PostgreSQL, the write lock on SQLite, held to commit), so two spends of one wallet take turns and the
second reads the first one's balance.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from contracts.errors import ForecourtError
from registry.fleet import ledger
from registry.models import Movement, PointAllocation, PointAward, Wallet

__all__ = ["AWARD_KINDS", "POINTS", "SPEND_KINDS", "PointsError", "award", "check", "earn_key", "lock",
           "open_awards", "points_wallet", "pool", "reverse_earn", "reverse_spend", "spend"]

POINTS = "points"                                          # a points wallet's unit
AWARD_KINDS = ("earn", "transfer_in", "correction")        # + movements with an award row
SPEND_KINDS = ("redeem", "expiry", "transfer_out", "correction")


class PointsError(ForecourtError):
    """A points movement refused: more than the balance, not a points wallet, nothing under a key."""


def earn_key(sale_id: str) -> str:
    """The key of the points a sale earned."""
    return f"earn:{sale_id}"


def _whole(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int):
        raise PointsError("points must be a whole number")
    if not 0 < points <= ledger.MAX_AMOUNT:
        raise PointsError("points must be above zero and in range", points=points)
    return points


def _is_points(wallet: Wallet) -> Wallet:
    if wallet.unit != POINTS:
        raise PointsError("not a points wallet", wallet=wallet.id)
    return wallet


def points_wallet(s: Session, account_id: int) -> Wallet:
    """The account's points wallet (the first one, by id), read afresh (after the account's lock its
    balance is current); PointsError when it has none."""
    found = s.scalars(select(Wallet).where(Wallet.account_id == account_id, Wallet.unit == POINTS)
                      .order_by(Wallet.id).limit(1).execution_options(populate_existing=True)).first()
    if found is None:
        raise PointsError("account has no points wallet", account=account_id)
    return found


def _existing(s: Session, key: str) -> Movement | None:
    return s.scalars(select(Movement).where(Movement.key == key)).one_or_none()


def lock(s: Session, wallet: Wallet) -> int:
    """Write the wallet's row (no change) to hold its lock to commit; its balance read after the lock."""
    s.execute(update(Wallet).where(Wallet.id == wallet.id).values(balance=Wallet.balance + 0)
              .execution_options(synchronize_session=False))
    balance = s.scalar(select(Wallet.balance).where(Wallet.id == wallet.id))
    if balance is None:
        raise PointsError("no such wallet", wallet=wallet.id)
    set_committed_value(wallet, "balance", balance)
    return int(balance)


def open_awards(s: Session, wallet_id: int) -> list[PointAward]:
    """The wallet's awards with points left, oldest first (earned_at, then movement id)."""
    return list(s.scalars(select(PointAward)
                          .where(PointAward.wallet_id == wallet_id, PointAward.remaining > 0)
                          .order_by(PointAward.earned_at, PointAward.movement_id)
                          .execution_options(populate_existing=True)))


def _allocate(s: Session, spend_id: int, award_id: int, points: int, *, merge: bool = False) -> None:
    """Allocate `points` of the award to the spend: one row per pair. A movement just booked has none
    yet; a debt paid later (`merge`) adds to the row its reversal may already have on that award."""
    row = None
    if merge:
        row = s.scalars(select(PointAllocation).where(PointAllocation.spend_id == spend_id,
                                                      PointAllocation.award_id == award_id)).one_or_none()
    if row is None:
        s.add(PointAllocation(spend_id=spend_id, award_id=award_id, points=points))
    else:
        row.points += points


def _take(s: Session, spend_id: int, awards: list[PointAward], points: int, *, merge: bool = False) -> int:
    """Take up to `points` from `awards` in their order for the spend; how many were taken."""
    taken = 0
    for each in awards:
        if taken == points:
            break
        share = min(each.remaining, points - taken)
        if share > 0:
            each.remaining -= share
            _allocate(s, spend_id, each.movement_id, share, merge=merge)
            taken += share
    s.flush()
    return taken


def _debts(s: Session, wallet_id: int) -> list[tuple[int, int]]:
    """The wallet's - movements not fully covered by awards: (movement id, points owed), oldest first."""
    covered = (select(PointAllocation.spend_id, func.sum(PointAllocation.points).label("used"))
               .group_by(PointAllocation.spend_id).subquery())
    rows = s.execute(select(Movement.id, Movement.amount, func.coalesce(covered.c.used, 0))
                     .outerjoin(covered, covered.c.spend_id == Movement.id)
                     .where(Movement.wallet_id == wallet_id, Movement.amount < 0).order_by(Movement.id))
    return [(mid, -amount - int(used)) for mid, amount, used in rows if -amount > int(used)]


def _pay_debts(s: Session, wallet_id: int) -> None:
    """Points just in pay what reversals left owing, oldest debt first, from the oldest awards."""
    for spend_id, owed in _debts(s, wallet_id):
        if _take(s, spend_id, open_awards(s, wallet_id), owed, merge=True) < owed:
            break


def award(s: Session, wallet: Wallet, points: int, *, key: str, at: dt.datetime, station: str | None,
          product_group: str, sale_id: str | None = None, actor: str = "", kind: str = "earn",
          earned_at: dt.datetime | None = None, reason: str = "") -> Movement:
    """Book `points` (> 0) on a points wallet once under `key`, with its award row; the movement.

    `earned_at` (default `at`) dates the award for expiry: a pool transfer keeps the original's. Points in
    while the balance is below zero pay that debt first.
    """
    _whole(points)
    if kind not in AWARD_KINDS:
        raise PointsError(f"an award's kind must be one of {', '.join(AWARD_KINDS)}", kind=kind)
    _is_points(wallet)
    before = lock(s, wallet)                # then look for the key: another session may have just booked it
    if _existing(s, key) is not None:       # the same again: post checks it is the same, and returns it
        return ledger.post(s, wallet, kind, points, key=key, at=at, sale_id=sale_id, actor=actor)
    movement = ledger.post(s, wallet, kind, points, key=key, at=at, sale_id=sale_id, actor=actor,
                           reason=reason)
    s.add(PointAward(movement_id=movement.id, wallet_id=wallet.id, station_id=station,
                     product_group=product_group, points=points, remaining=points,
                     earned_at=earned_at or at))
    s.flush()
    if before < 0:
        _pay_debts(s, wallet.id)
    return movement


def spend(s: Session, wallet: Wallet, points: int, *, kind: str = "redeem", key: str, at: dt.datetime,
          sale_id: str | None = None, actor: str = "", reason: str = "") -> Movement:
    """Take `points` (> 0) from a points wallet once under `key`, oldest awards first; the movement.

    More than the balance is a PointsError (nothing booked); so is a closed wallet, except for expiry.
    """
    _whole(points)
    if kind not in SPEND_KINDS:
        raise PointsError(f"a spend's kind must be one of {', '.join(SPEND_KINDS)}", kind=kind)
    _is_points(wallet)
    balance = lock(s, wallet)
    if _existing(s, key) is not None:
        return ledger.post(s, wallet, kind, -points, key=key, at=at, sale_id=sale_id, actor=actor)
    if kind != "expiry" and wallet.status != "active":
        raise PointsError("points wallet is closed", wallet=wallet.id)
    if points > balance:
        raise PointsError("not enough points", wallet=wallet.id, balance=balance, asked=points)
    movement = ledger.post(s, wallet, kind, -points, key=key, at=at, sale_id=sale_id, actor=actor,
                           reason=reason)
    if _take(s, movement.id, open_awards(s, wallet.id), points) != points:
        # balance >= points yet the awards hold less: the ledger is broken (check() names it)
        raise PointsError("awards do not cover the balance", wallet=wallet.id)
    return movement


def reverse_earn(s: Session, sale_id: str, at: dt.datetime, actor: str) -> Movement | None:
    """Take back the points a sale earned (a return or a void), once; None when it earned none.

    What is left of its own award goes first, then the oldest awards; what none covers is a debt (the
    balance goes below zero) that later points pay first. A member's award already pooled is not fetched
    back from the pool: the member owes it, and its next points pay it before any are pooled.
    """
    original = _existing(s, earn_key(sale_id))
    if original is None:
        return None
    key = ledger.REVERSAL + original.key
    found = _existing(s, key)
    if found is not None:
        return found
    wallet = s.get(Wallet, original.wallet_id)
    if wallet is None:          # movements.wallet_id is a foreign key: only a broken database
        raise PointsError("earn's wallet is gone", sale=sale_id)
    lock(s, wallet)
    found = _existing(s, key)               # booked by another session while this one waited
    if found is not None:
        return found
    movement = ledger.post(s, wallet, "reversal", -original.amount, key=key, at=at, sale_id=sale_id,
                           actor=actor, reason="sale returned or voided")
    own = s.get(PointAward, original.id, populate_existing=True)
    first = [own] if own is not None else []
    taken = _take(s, movement.id, first, original.amount)
    _take(s, movement.id, open_awards(s, wallet.id), original.amount - taken)
    return movement


def pool(s: Session, source: Wallet, target: Wallet, *, before: dt.datetime, key: str, at: dt.datetime,
         actor: str = "") -> int:
    """Move what is left of the source's awards earned before `before` to the target, once under `key`;
    how many points moved (0 when the key is booked already).

    One transfer_out (`key`) takes exactly those awards (the oldest); one transfer_in per award
    (key:{award}) gets an award dated as the original, so expiry stays fair, without a station (the
    station was credited once, when the points were earned). Both wallets are locked in id order.
    """
    for wallet in sorted((_is_points(source), _is_points(target)), key=lambda w: w.id):
        lock(s, wallet)
    if source.id == target.id or _existing(s, key) is not None:
        return 0
    awards = [a for a in open_awards(s, source.id) if a.earned_at < before]
    total = sum(a.remaining for a in awards)
    if total == 0:
        return 0
    owed = target.balance < 0
    out = ledger.post(s, source, "transfer_out", -total, key=key, at=at, actor=actor,
                      reason=f"pooled into wallet {target.id}")
    moved = [(a, a.remaining) for a in awards]
    _take(s, out.id, awards, total)
    for each, share in moved:
        inn = ledger.post(s, target, "transfer_in", share, key=f"{key}:{each.movement_id}", at=at,
                          actor=actor, reason=f"pooled from wallet {source.id}")
        s.add(PointAward(movement_id=inn.id, wallet_id=target.id, station_id=None,
                         product_group=each.product_group, points=share, remaining=share,
                         earned_at=each.earned_at))
    s.flush()
    if owed:
        _pay_debts(s, target.id)
    return total


def reverse_spend(s: Session, key: str, at: dt.datetime, actor: str) -> Movement:
    """Give back the points of the redeem booked under `key`, once (key "reversal:" + key).

    The awards it used get their points back (a negative allocation of the reversal on each); a debt the
    wallet has is paid from them first.
    """
    original = _existing(s, key)
    if original is None or original.kind != "redeem":
        raise PointsError("no redeem under that key")
    rkey = ledger.REVERSAL + key
    found = _existing(s, rkey)
    if found is not None:
        return found
    wallet = s.get(Wallet, original.wallet_id)
    if wallet is None:
        raise PointsError("redeem's wallet is gone")
    before = lock(s, wallet)
    found = _existing(s, rkey)              # booked by another session while this one waited
    if found is not None:
        return found
    movement = ledger.post(s, wallet, "reversal", -original.amount, key=rkey, at=at,
                           sale_id=original.sale_id, actor=actor, reason="redeem given back")
    used = s.execute(select(PointAllocation.award_id, PointAllocation.points)
                     .where(PointAllocation.spend_id == original.id).order_by(PointAllocation.award_id))
    for award_id, points in list(used):
        row = s.get(PointAward, award_id, populate_existing=True)
        if row is None:         # point_allocations.award_id is a foreign key: only a broken database
            raise PointsError("redeem's award is gone")
        row.remaining += points
        _allocate(s, movement.id, award_id, -points)
    s.flush()
    if before < 0:
        _pay_debts(s, wallet.id)
    return movement


def check(s: Session) -> list[str]:
    """Every broken invariant of the points wallets, one line each; [] when sound.

    balance == sum of movements; balance == sum(remaining) - debt, and no debt while an award has points
    left (so a balance >= 0 is the awards' remaining); each award: 0 <= remaining <= points and its
    allocations sum to points - remaining, its movement a + movement of the same points and wallet;
    each movement's allocations are on its own wallet's awards and cover at most what it took (a - movement)
    or give back exactly what it added (a + movement without an award).
    """
    wallets = list(s.scalars(select(Wallet).where(Wallet.unit == POINTS).order_by(Wallet.id)))
    ids = {w.id for w in wallets}
    broken = [f"wallet {wid}: balance {bal} != movements {total}"
              for wid, bal, total in ledger.check(s) if wid in ids]
    for wallet in wallets:
        broken += _check_wallet(s, wallet)
    return broken


def _check_wallet(s: Session, wallet: Wallet) -> list[str]:
    broken: list[str] = []
    rows = s.scalars(select(PointAward).where(PointAward.wallet_id == wallet.id))
    awards = {a.movement_id: a for a in rows}
    moves = {m.id: m for m in s.scalars(select(Movement).where(Movement.wallet_id == wallet.id))}
    allocs = list(s.scalars(select(PointAllocation).where(
        PointAllocation.spend_id.in_(select(Movement.id).where(Movement.wallet_id == wallet.id)))))
    by_award: dict[int, int] = {}
    by_spend: dict[int, int] = {}
    for row in allocs:
        if row.award_id not in awards:
            broken.append(f"allocation {row.id}: award {row.award_id} is not on wallet {wallet.id}")
        by_award[row.award_id] = by_award.get(row.award_id, 0) + row.points
        by_spend[row.spend_id] = by_spend.get(row.spend_id, 0) + row.points
    for mid, each in awards.items():
        used = by_award.get(mid, 0)
        if not 0 <= each.remaining <= each.points or used != each.points - each.remaining:
            broken.append(f"award {mid}: points {each.points}, remaining {each.remaining}, allocated {used}")
        move = moves.get(mid)
        if move is None or move.amount != each.points or each.points <= 0:
            broken.append(f"award {mid}: its movement is not a + movement of {each.points} on the wallet")
    debt = 0
    for mid, move in moves.items():
        used = by_spend.get(mid, 0)
        if move.amount < 0:
            if not 0 <= used <= -move.amount or (move.kind != "reversal" and used != -move.amount):
                broken.append(f"movement {mid}: took {-move.amount}, allocated {used}")
            debt += -move.amount - used
        elif mid not in awards and used != -move.amount:
            broken.append(f"movement {mid}: +{move.amount} with neither an award nor points given back")
    remaining = sum(a.remaining for a in awards.values())
    if wallet.balance != remaining - debt or (debt > 0 and remaining > 0):
        broken.append(f"wallet {wallet.id}: balance {wallet.balance}, awards remaining {remaining}, "
                      f"debt {debt}")
    return broken
