"""registry.loyalty.points: awards, spends oldest first, reversals, debts and the invariant check, on real
SQLite (and PostgreSQL for the race of two spends of the last points)."""

from __future__ import annotations

import datetime as dt
import threading

import pg_env
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.fleet.ledger import LedgerError
from registry.loyalty import points
from registry.loyalty.points import PointsError
from registry.models import Account, Movement, PointAllocation, PointAward, Wallet

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
DAY = dt.timedelta(days=1)

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


sm, any_sm = pg_env.sm, pg_env.any_sm      # sessions on SQLite; on SQLite and PostgreSQL in turn


def make_loyalty(s: Session, *, tz: str = "UTC", name: str = "Member") -> Wallet:
    """A loyalty account with its points wallet (committed by the caller)."""
    account = Account(name=name, kind="loyalty", timezone=tz)
    s.add(account)
    s.flush()
    wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
    s.add(wallet)
    s.flush()
    return wallet


def earn(s: Session, wallet: Wallet, pts: int, sale: str, at: dt.datetime = NOW, *,
         earned_at: dt.datetime | None = None) -> Movement:
    return points.award(s, wallet, pts, key=points.earn_key(sale), at=at, station="S1", product_group="fuel",
                        sale_id=sale, earned_at=earned_at)


def remaining(s: Session, wallet: Wallet) -> dict[str, int]:
    """Each award's remaining by its movement's key."""
    rows = s.execute(select(Movement.key, PointAward.remaining).join(PointAward,
                     PointAward.movement_id == Movement.id).where(PointAward.wallet_id == wallet.id))
    return {key: int(left) for key, left in rows}


def allocations(s: Session, spend: Movement) -> dict[str, int]:
    """A spend's allocations by the award movement's key."""
    rows = s.execute(select(Movement.key, PointAllocation.points).join(
        Movement, Movement.id == PointAllocation.award_id).where(PointAllocation.spend_id == spend.id))
    return {key: int(pts) for key, pts in rows}


# --- award ------------------------------------------------------------------------------------------------

def test_award_books_the_points_and_an_award_once(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        first = earn(s, w, 120, "sale-1")
        again = earn(s, w, 120, "sale-1")
        s.commit()
        assert again.id == first.id and first.kind == "earn" and w.balance == 120
        row = s.get(PointAward, first.id)
        assert row is not None
        assert (row.points, row.remaining, row.station_id, row.product_group) == (120, 120, "S1", "fuel")
        assert points.check(s) == []
        with pytest.raises(LedgerError, match="another wallet, kind or amount"):
            earn(s, w, 121, "sale-1")


@pytest.mark.parametrize("bad", [0, -5, True, 2.5, 10**14])
def test_award_refuses_points_that_are_not_a_positive_whole_number(sm: sessionmaker[Session],
                                                                   bad: object) -> None:
    with sm() as s:
        w = make_loyalty(s)
        with pytest.raises(PointsError, match="points must be"):
            points.award(s, w, bad, key="k", at=NOW, station=None, product_group="")  # type: ignore[arg-type]


def test_award_and_spend_refuse_a_money_wallet_and_an_unknown_kind(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        account = Account(name="Fleet")
        s.add(account)
        s.flush()
        money = Wallet(account_id=account.id, allowed_products="", unit="money")
        s.add(money)
        s.flush()
        with pytest.raises(PointsError, match="not a points wallet"):
            points.award(s, money, 5, key="a", at=NOW, station=None, product_group="")
        with pytest.raises(PointsError, match="not a points wallet"):
            points.spend(s, money, 5, key="b", at=NOW)
        w = make_loyalty(s)
        with pytest.raises(PointsError, match="kind must be"):
            points.award(s, w, 5, key="c", at=NOW, station=None, product_group="", kind="redeem")
        with pytest.raises(PointsError, match="kind must be"):
            points.spend(s, w, 5, key="d", at=NOW, kind="earn")
        assert s.scalars(select(Movement)).all() == []


def test_points_wallet_finds_the_account_wallet_or_says_there_is_none(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        assert points.points_wallet(s, w.account_id).id == w.id
        with pytest.raises(PointsError, match="no points wallet"):
            points.points_wallet(s, w.account_id + 99)


# --- spend ------------------------------------------------------------------------------------------------

def test_spend_takes_the_oldest_awards_first_by_earned_at(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "new", earned_at=NOW)
        earn(s, w, 50, "old", earned_at=NOW - 10 * DAY)      # booked second, earned first
        earn(s, w, 30, "mid", earned_at=NOW - 5 * DAY)
        spent = points.spend(s, w, 70, key="redeem:r1", at=NOW, actor="att-1")
        s.commit()
        assert (spent.kind, spent.amount, w.balance) == ("redeem", -70, 110)
        assert allocations(s, spent) == {"earn:old": 50, "earn:mid": 20}
        assert remaining(s, w) == {"earn:new": 100, "earn:old": 0, "earn:mid": 10}
        assert points.spend(s, w, 70, key="redeem:r1", at=NOW).id == spent.id     # same key: once
        assert w.balance == 110 and points.check(s) == []


def test_spend_of_more_than_the_balance_is_refused_and_books_nothing(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 40, "a")
        s.commit()
        with pytest.raises(PointsError, match="not enough points") as refused:
            points.spend(s, w, 41, key="redeem:big", at=NOW)
        assert refused.value.context["balance"] == 40
        s.rollback()
        assert w.balance == 40 and s.scalars(select(Movement).where(Movement.key == "redeem:big")).all() == []
        points.spend(s, w, 40, key="redeem:all", at=NOW)
        assert w.balance == 0 and remaining(s, w) == {"earn:a": 0} and points.check(s) == []


def test_a_closed_wallet_refuses_a_redeem_but_still_expires(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 40, "a")
        w.status = "closed"
        s.flush()
        with pytest.raises(PointsError, match="closed"):
            points.spend(s, w, 10, key="redeem:x", at=NOW)
        points.spend(s, w, 40, kind="expiry", key="expiry:x", at=NOW)
        assert w.balance == 0 and points.check(s) == []


# --- reversals --------------------------------------------------------------------------------------------

def test_reverse_earn_takes_its_own_award_first_then_the_oldest(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 50, "old", earned_at=NOW - 3 * DAY)
        earn(s, w, 100, "sale", earned_at=NOW - DAY)
        earn(s, w, 60, "young")
        spent = points.spend(s, w, 120, key="redeem:1", at=NOW)   # old 50, sale 70: sale has 30 left
        assert allocations(s, spent) == {"earn:old": 50, "earn:sale": 70}
        back = points.reverse_earn(s, "sale", NOW, "ops")
        assert back is not None
        assert (back.kind, back.amount, back.key) == ("reversal", -100, "reversal:earn:sale")
        assert allocations(s, back) == {"earn:sale": 30, "earn:young": 60}
        assert w.balance == -10 and remaining(s, w) == {"earn:old": 0, "earn:sale": 0, "earn:young": 0}
        assert points.check(s) == []
        assert points.reverse_earn(s, "sale", NOW, "ops") is back                 # once
        assert points.reverse_earn(s, "no-such-sale", NOW, "ops") is None          # earned nothing


def test_a_debt_is_paid_first_by_the_next_award(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "sale")
        points.spend(s, w, 80, key="redeem:1", at=NOW)
        back = points.reverse_earn(s, "sale", NOW, "ops")
        assert back is not None and w.balance == -80 and points.check(s) == []
        earn(s, w, 30, "next")                      # pays 30 of the 80 owed
        assert w.balance == -50 and remaining(s, w)["earn:next"] == 0
        earn(s, w, 70, "more")                      # pays the last 50, keeps 20
        assert w.balance == 20 and remaining(s, w)["earn:more"] == 20
        assert allocations(s, back) == {"earn:sale": 20, "earn:next": 30, "earn:more": 50}
        assert points.check(s) == []
        with pytest.raises(PointsError, match="not enough"):
            points.spend(s, w, 21, key="redeem:2", at=NOW)


def test_reverse_spend_gives_the_points_back_to_the_awards_it_used(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 50, "old", earned_at=NOW - 3 * DAY)
        earn(s, w, 100, "new")
        spent = points.spend(s, w, 80, key="redeem:order-1", at=NOW)
        back = points.reverse_spend(s, "redeem:order-1", NOW, "att-1")
        assert (back.kind, back.amount, back.key) == ("reversal", 80, "reversal:redeem:order-1")
        assert remaining(s, w) == {"earn:old": 50, "earn:new": 100} and w.balance == 150
        assert allocations(s, back) == {"earn:old": -50, "earn:new": -30}
        assert allocations(s, spent) == {"earn:old": 50, "earn:new": 30}          # never rewritten
        assert points.reverse_spend(s, "redeem:order-1", NOW, "att-1").id == back.id
        assert w.balance == 150 and points.check(s) == []
        n_awards = len(s.scalars(select(PointAward)).all())
        assert n_awards == 2                         # no new award: a station's granted points stay
        with pytest.raises(PointsError, match="no redeem"):
            points.reverse_spend(s, "redeem:unknown", NOW, "att-1")
        with pytest.raises(PointsError, match="no redeem"):
            points.reverse_spend(s, "earn:old", NOW, "att-1")


def test_reverse_spend_in_debt_pays_the_debt_first(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "sale")
        points.spend(s, w, 100, key="redeem:r", at=NOW)
        points.reverse_earn(s, "sale", NOW, "ops")
        assert w.balance == -100 and points.check(s) == []
        points.reverse_spend(s, "redeem:r", NOW, "ops")
        assert w.balance == 0 and remaining(s, w) == {"earn:sale": 0} and points.check(s) == []


# --- check ------------------------------------------------------------------------------------------------

def test_check_names_each_broken_invariant(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "a")
        spent = points.spend(s, w, 30, key="redeem:1", at=NOW)
        s.commit()
        assert points.check(s) == []
        s.execute(update(PointAward).values(remaining=80))
        broken = points.check(s)
        assert any(line.startswith("award ") for line in broken)
        assert any(line.startswith(f"wallet {w.id}: balance 70, awards remaining 80") for line in broken)
        s.rollback()
        s.execute(update(Wallet).where(Wallet.id == w.id).values(balance=71))
        assert f"wallet {w.id}: balance 71 != movements 70" in points.check(s)
        s.rollback()
        s.execute(update(PointAllocation).where(PointAllocation.spend_id == spent.id).values(points=20))
        broken = points.check(s)
        assert any(line.startswith(f"movement {spent.id}: took 30, allocated 20") for line in broken)


# --- two sessions -----------------------------------------------------------------------------------------

def test_two_spends_of_the_last_points_one_wins_one_is_refused(any_sm: sessionmaker[Session]) -> None:
    """The first spend holds the wallet's row; the second waits, then reads the balance it left."""
    with any_sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, f"race-{w.id}")
        s.commit()
        wid = w.id
    outcome: list[str] = []
    started = threading.Event()

    def second() -> None:
        with any_sm() as s2:
            wallet = s2.get(Wallet, wid)
            assert wallet is not None
            started.set()
            try:
                points.spend(s2, wallet, 100, key=f"redeem:second-{wid}", at=NOW)
                s2.commit()
                outcome.append("spent")
            except PointsError:
                s2.rollback()
                outcome.append("refused")

    with any_sm() as first:
        wallet = first.get(Wallet, wid)
        assert wallet is not None
        points.spend(first, wallet, 100, key=f"redeem:first-{wid}", at=NOW)
        thread = threading.Thread(target=second)
        thread.start()
        assert started.wait(10)
        thread.join(1.0)
        assert thread.is_alive() and outcome == []          # waits on the first one's lock
        first.commit()
    thread.join(10)
    assert outcome == ["refused"]
    with any_sm() as s:
        wallet = s.get(Wallet, wid)
        assert wallet is not None and wallet.balance == 0
        assert points.check(s) == []


def test_one_earn_booked_by_two_sessions_at_once_counts_once(any_sm: sessionmaker[Session]) -> None:
    """The second session waits on the wallet's row, then finds the first one's movement under the key."""
    with any_sm() as s:
        w = make_loyalty(s)
        s.commit()
        wid = w.id
    sale = f"twice-{wid}"
    got: list[int] = []

    def second() -> None:
        with any_sm() as s2:
            wallet = s2.get(Wallet, wid)
            assert wallet is not None
            got.append(earn(s2, wallet, 70, sale).id)
            s2.commit()

    with any_sm() as first:
        wallet = first.get(Wallet, wid)
        assert wallet is not None
        booked = earn(first, wallet, 70, sale)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and got == []
        first.commit()
    thread.join(10)
    assert got == [booked.id]
    with any_sm() as s:
        wallet = s.get(Wallet, wid)
        assert wallet is not None and wallet.balance == 70
        assert len(s.scalars(select(PointAward).where(PointAward.wallet_id == wid)).all()) == 1
        assert points.check(s) == []


def test_pool_moves_the_awards_before_a_date_once_and_pays_the_target_debt(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        source, target = make_loyalty(s), make_loyalty(s)
        earn(s, source, 30, "p-old", earned_at=NOW - 9 * DAY)
        earn(s, source, 20, "p-new", earned_at=NOW)
        earn(s, target, 10, "t")
        points.spend(s, target, 10, key="redeem:t", at=NOW)
        points.reverse_earn(s, "t", NOW, "ops")                      # the target owes 10
        assert points.pool(s, source, target, before=NOW, key="pool:x:2026-11", at=NOW) == 30
        assert (source.balance, target.balance) == (20, 20)
        moved = s.scalars(select(PointAward).join(Movement, Movement.id == PointAward.movement_id)
                          .where(Movement.kind == "transfer_in")).one()
        assert (moved.points, moved.remaining, moved.earned_at, moved.station_id) == (30, 20, NOW - 9 * DAY,
                                                                                     None)
        assert points.pool(s, source, target, before=NOW + DAY, key="pool:x:2026-11", at=NOW) == 0   # once
        assert points.pool(s, source, source, before=NOW + DAY, key="pool:self", at=NOW) == 0
        assert points.check(s) == []
