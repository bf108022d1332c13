"""registry.loyalty.close (expiry of the oldest points, pooling, tier review, once per month) and
registry.loyalty.history (a card's last movements), on real SQLite."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pg_env
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_loyalty_points import earn, make_loyalty, remaining

from contracts.errors import ConfigError
from registry.loyalty import close, history, points
from registry.loyalty.points import PointsError
from registry.models import (
    AuditEntry,
    Card,
    LoyaltyLink,
    LoyaltyMember,
    Movement,
    PointAward,
    Reward,
    RewardOrder,
    Station,
    Tier,
    Transaction,
    Wallet,
)

CLOSE_AT = dt.datetime(2026, 12, 1, 6, 0)        # November 2026 is over in UTC and in New York
T = dt.datetime

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


sm, any_sm = pg_env.sm, pg_env.any_sm      # sessions on SQLite; on SQLite and PostgreSQL in turn


def member(s: Session, wallet: Wallet, *, pool: int | None = None) -> LoyaltyMember:
    row = LoyaltyMember(account_id=wallet.account_id, issued_on=dt.date(2024, 1, 1), pool_account_id=pool)
    s.add(row)
    s.flush()
    return row


def kinds(s: Session, wallet: Wallet) -> list[tuple[str, int]]:
    return [(m.kind, m.amount) for m in s.scalars(select(Movement).where(Movement.wallet_id == wallet.id)
                                                   .order_by(Movement.id))]


# --- months (pure) ----------------------------------------------------------------------------------------

def test_months_and_the_expiry_cutoff() -> None:
    assert close.month_start("2026-02") == dt.date(2026, 2, 1)
    assert close.next_month(dt.date(2026, 1, 1), -1) == dt.date(2025, 12, 1)
    assert close.expiry_cutoff("2026-11", 24) == dt.date(2024, 12, 1)
    assert close.expiry_cutoff("2026-01", 1) == dt.date(2026, 1, 1)
    for bad in ("2026-13", "2026-00", "26-11", "2026-1", "2026-11-01", ""):
        with pytest.raises(ConfigError, match="YYYY-MM"):
            close.month_start(bad)
    for months in (0, -1, True):
        with pytest.raises(ConfigError, match="expiry_months"):
            close.expiry_cutoff("2026-11", months)


# --- expiry -----------------------------------------------------------------------------------------------

def test_close_expires_the_oldest_points_only_and_once(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "nov-15", earned_at=T(2024, 11, 15))
        earn(s, w, 50, "nov-30", earned_at=T(2024, 11, 30, 23, 59))
        earn(s, w, 70, "dec-01", earned_at=T(2024, 12, 1))
        earn(s, w, 30, "recent", earned_at=T(2026, 10, 2))
        points.spend(s, w, 120, key="redeem:1", at=T(2025, 6, 1))     # nov-15 all, nov-30 20 of 50
        done = close.close_account(s, w.account_id, "2026-11", CLOSE_AT, expiry_months=24)
        assert (done.expired, done.pooled, done.skipped) == (30, 0, "")
        assert remaining(s, w) == {"earn:nov-15": 0, "earn:nov-30": 0, "earn:dec-01": 70, "earn:recent": 30}
        expiry = s.scalars(select(Movement).where(Movement.key == f"expiry:{w.id}:2026-11")).one()
        assert (expiry.kind, expiry.amount, expiry.at) == ("expiry", -30, CLOSE_AT)
        assert w.balance == 100 and points.check(s) == []
        again = close.close_account(s, w.account_id, "2026-11", CLOSE_AT + dt.timedelta(days=1),
                                    expiry_months=24)
        assert again.expired == 0 and w.balance == 100
        assert [k for k, _ in kinds(s, w)].count("expiry") == 1
        nxt = close.close_account(s, w.account_id, "2026-12", T(2027, 1, 1, 1), expiry_months=24)
        assert nxt.expired == 70 and w.balance == 30 and points.check(s) == []


def test_the_cutoff_and_the_month_end_are_in_the_account_time_zone(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        ny = make_loyalty(s, tz="America/New_York")
        utc = make_loyalty(s)
        for w in (ny, utc):     # 2024-12-01 03:00 UTC is still 30 November in New York
            earn(s, w, 10, f"edge-{w.id}", earned_at=T(2024, 12, 1, 3))
        early = T(2026, 12, 1, 2)                   # the month is over in UTC, not yet in New York
        assert close.close_account(s, ny.account_id, "2026-11", early, expiry_months=24).skipped \
            == "month not over"
        assert close.close_account(s, utc.account_id, "2026-11", early, expiry_months=24).expired == 0
        assert close.close_account(s, ny.account_id, "2026-11", CLOSE_AT, expiry_months=24).expired == 10
        assert (ny.balance, utc.balance) == (0, 10) and points.check(s) == []


def test_an_account_in_debt_expires_nothing(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, "old", earned_at=T(2024, 1, 1))
        points.spend(s, w, 100, key="redeem:x", at=T(2024, 2, 1))
        points.reverse_earn(s, "old", T(2024, 2, 2), "ops")
        assert close.close_account(s, w.account_id, "2026-11", CLOSE_AT, expiry_months=24).expired == 0
        assert w.balance == -100 and points.check(s) == []


# --- pooling ----------------------------------------------------------------------------------------------

def test_pooling_moves_each_award_with_its_date_and_expiry_stays_fair(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        pool = make_loyalty(s, name="Fleet owner")
        w = make_loyalty(s)
        member(s, pool)
        member(s, w, pool=pool.account_id)
        earn(s, w, 40, "m1", earned_at=T(2024, 12, 10))
        earn(s, w, 60, "m2", earned_at=T(2026, 11, 20))
        earn(s, w, 25, "late", earned_at=T(2026, 12, 1, 1))     # after November: stays for next month
        points.spend(s, w, 10, key="redeem:m", at=T(2025, 1, 1))
        done = close.close_account(s, w.account_id, "2026-11", CLOSE_AT, expiry_months=24)
        assert (done.expired, done.pooled) == (0, 90)
        assert w.balance == 25 and pool.balance == 90 and points.check(s) == []
        moved = list(s.scalars(select(PointAward).where(PointAward.wallet_id == pool.id)
                               .order_by(PointAward.earned_at)))
        assert [(a.points, a.earned_at, a.station_id, a.product_group) for a in moved] == [
            (30, T(2024, 12, 10), None, "fuel"), (60, T(2026, 11, 20), None, "fuel")]
        keys = set(s.scalars(select(Movement.key).where(Movement.key.like(f"pool:{w.account_id}:%"))))
        assert len(keys) == 3 and f"pool:{w.account_id}:2026-11" in keys      # one out, one in per award
        assert all(k.startswith(f"pool:{w.account_id}:2026-11") for k in keys)
        assert close.close_account(s, w.account_id, "2026-11", CLOSE_AT, expiry_months=24).pooled == 0
        assert pool.balance == 90
        # December's close: the pooled m1 points (earned 2024-12-10) are now 24 months old, at the pool
        assert close.close_account(s, pool.account_id, "2026-12", T(2027, 1, 2), expiry_months=24).expired \
            == 30
        assert close.close_account(s, w.account_id, "2026-12", T(2027, 1, 2), expiry_months=24).pooled == 25
        assert (w.balance, pool.balance) == (0, 85) and points.check(s) == []


def test_a_pool_without_a_points_wallet_is_skipped_by_run_close(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        orphan = make_loyalty(s, name="No wallet")
        orphan_id = orphan.account_id
        s.delete(orphan)                    # the account stays, its wallet goes
        ok = make_loyalty(s)
        earn(s, ok, 5, "ok", earned_at=T(2020, 1, 1))
        pooled = make_loyalty(s)
        member(s, pooled, pool=orphan_id)
        earn(s, pooled, 7, "p", earned_at=T(2026, 11, 1))
        s.commit()
        ok_id, pooled_id, pooled_wallet = ok.account_id, pooled.account_id, pooled.id
    summary = close.run_close(sm, "2026-11", CLOSE_AT, review=lambda s, a, now: ("base", "base"))
    by_id = {a.account_id: a for a in summary.accounts}
    assert by_id[ok_id].expired == 5
    assert by_id[pooled_id].skipped == f"account has no points wallet (account={orphan_id})"
    with sm() as s:
        assert points.check(s) == []
        left = s.get(Wallet, pooled_wallet)
        assert left is not None and left.balance == 7
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "loyalty.close")).one()
        assert entry.subject == "month:2026-11"
        assert json.loads(entry.detail) == {"accounts": 2, "expired": 5, "pooled": 0, "skipped": 1}


# --- tiers and run_close ----------------------------------------------------------------------------------

def test_run_close_reviews_tiers_at_the_month_end_and_commits(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        s.add_all([Tier(name="base", rank=0, multiplier_pct=100, min_spend_cents=0),
                   Tier(name="silver", rank=1, multiplier_pct=125, min_spend_cents=50_000)])
        w = make_loyalty(s)
        member(s, w)
        earn(s, w, 10, "big-sale", at=T(2026, 11, 30))
        s.add(Transaction(sale_id="big-sale", device_id="T1", station_id="S1", pump=1, nozzle=1, volume_cl=1,
                          amount_cents=60_000, price_milli=1, card_masked="****", finished_at=T(2026, 11, 30),
                          received_at=T(2026, 11, 30)))
        s.commit()
        wid = w.account_id
    seen: list[dt.datetime] = []

    def review(s: Session, account_id: int, now: dt.datetime) -> tuple[str, str]:
        seen.append(now)
        return close.tier_review(12)(s, account_id, now)

    summary = close.run_close(sm, "2026-11", CLOSE_AT, review=review)
    assert seen == [T(2026, 12, 1)] and summary.accounts[0].tier == ("base", "silver")
    with sm() as s:
        row = s.get(LoyaltyMember, wid)
        assert row is not None and row.tier == "silver"
    assert close.run_close(sm, "2026-11", CLOSE_AT).accounts[0].tier == ("silver", "silver")  # default hook
    with pytest.raises(ConfigError, match="YYYY-MM"):
        close.run_close(sm, "November", CLOSE_AT)


def test_close_month_closes_every_points_account(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        a, b = make_loyalty(s), make_loyalty(s)
        earn(s, a, 3, "a", earned_at=T(2020, 1, 1))
        earn(s, b, 4, "b", earned_at=T(2020, 1, 1))
        summary = close.close_month(s, "2026-11", CLOSE_AT, expiry_months=24)
        assert summary.expired == 7
        assert [x.account_id for x in summary.accounts] == [a.account_id, b.account_id]
        with pytest.raises(ConfigError):
            close.close_month(s, "2026-11", CLOSE_AT, expiry_months=0)


# --- history ----------------------------------------------------------------------------------------------

def test_history_shows_the_last_movements_in_local_time_with_stations(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        s.add(Station(id="S9", name="North"))
        w = make_loyalty(s, tz="Europe/Berlin")
        s.add(Card(token="tok-loyal", masked="****1234", account_id=w.account_id, expiry="3012",
                   pin_verifier=""))
        s.add(LoyaltyLink(token="tok-bank", account_id=w.account_id, masked="****9876",
                          created_at=T(2026, 1, 1)))
        s.flush()
        for day in range(1, 33):
            earn(s, w, day, f"s{day}", at=T(2026, 10, day % 28 + 1, 23, 30, 15, 999))
        spent = points.spend(s, w, 5, key="redeem:o1", at=T(2026, 11, 2, 9))
        s.add(RewardOrder(reward_id=_reward(s), station_id="S9", account_id=w.account_id,
                          movement_id=spent.id, status="handed_over", created_at=T(2026, 11, 2, 9)))
        s.add(Transaction(sale_id="s32", device_id="T1", station_id="S-SALE", pump=1, nozzle=1, volume_cl=1,
                          amount_cents=1, price_milli=1, card_masked="****", finished_at=T(2026, 11, 1),
                          received_at=T(2026, 11, 1)))
        points.reverse_earn(s, "s32", T(2026, 11, 3, 10), "ops")
        s.flush()
        shown = history.card_history(s, "tok-loyal")
        assert shown == history.card_history(s, "tok-bank")            # the linked bank card: the same
        assert (shown.account_id, shown.pooled, shown.balance) == (w.account_id, False, w.balance)
        assert len(shown.lines) == 30
        assert shown.lines[0] == history.Line(dt.date(2026, 11, 3), dt.time(11, 0), "S-SALE", -32, "reversal")
        assert shown.lines[1] == history.Line(dt.date(2026, 11, 2), dt.time(10, 0), "S9", -5, "redeem")
        # 23:30 UTC is the next day in Berlin (summer time); the award's station wins over its sale's
        assert shown.lines[2] == history.Line(dt.date(2026, 10, 6), dt.time(1, 30, 15), "S1", 32, "earn")
        assert [line.points for line in shown.lines[2:]] == list(range(32, 4, -1))
        assert len(history.card_history(s, "tok-loyal", limit=3).lines) == 3
        for bad in (0, 101, True):
            with pytest.raises(ConfigError, match="history size"):
                history.card_history(s, "tok-loyal", limit=bad)
        with pytest.raises(PointsError, match="no loyalty account"):
            history.card_history(s, "tok-unknown")


def test_a_pooled_card_sees_nothing(any_sm: sessionmaker[Session]) -> None:
    with any_sm() as s:
        pool = make_loyalty(s)
        w = make_loyalty(s)
        member(s, w, pool=pool.account_id)
        s.add(Card(token="tok-pooled", masked="****1", account_id=w.account_id, expiry="3012",
                   pin_verifier=""))
        earn(s, w, 10, "x")
        shown = history.card_history(s, "tok-pooled")
        assert (shown.pooled, shown.balance, shown.lines) == (True, None, ())


@pytest.mark.parametrize("status", ["blocked", "lost", "stolen", "replaced", "expired", "temp_blocked",
                                    "new"])
def test_a_loyalty_card_that_is_not_active_is_refused(sm: sessionmaker[Session], status: str) -> None:
    """Its token is never looked up as a link either: the card itself is what is refused."""
    with sm() as s:
        w = make_loyalty(s)
        s.add(Card(token="tok-off", masked="****2", account_id=w.account_id, expiry="3012", pin_verifier="",
                   status=status))
        s.add(LoyaltyLink(token="tok-off", account_id=w.account_id, masked="****2", created_at=T(2026, 1, 1)))
        s.add(Card(token="tok-on", masked="****3", account_id=w.account_id, expiry="3012", pin_verifier=""))
        earn(s, w, 10, "x")
        with pytest.raises(PointsError, match="not active") as refused:
            history.card_history(s, "tok-off")
        assert refused.value.context == {"status": status}
        with pytest.raises(PointsError, match="not active"):
            history.loyalty_account(s, "tok-off")
        assert history.card_history(s, "tok-on").balance == 10      # the group's active card still sees them


def _reward(s: Session) -> int:
    reward = Reward(name="Mug", points=5)
    s.add(reward)
    s.flush()
    return reward.id


@pytest.mark.parametrize("first", ["close", "redeem"])
def test_a_close_and_a_redeem_at_once_take_turns(any_sm: sessionmaker[Session], first: str) -> None:
    """Whichever holds the wallet first: the other reads what it left. The close expires only what the
    redeem did not take; a redeem after the close cannot spend expired points."""
    with any_sm() as s:
        w = make_loyalty(s)
        earn(s, w, 100, f"old-{w.id}", earned_at=T(2024, 1, 1))     # expires at November 2026's close
        earn(s, w, 20, f"new-{w.id}", earned_at=T(2026, 11, 1))
        s.commit()
        wid, aid = w.id, w.account_id
    outcome: list[object] = []

    def do(s: Session, what: str) -> None:
        wallet = s.get(Wallet, wid)
        assert wallet is not None
        if what == "close":
            outcome.append(close.close_account(s, aid, "2026-11", CLOSE_AT, expiry_months=24).expired)
            return
        try:
            points.spend(s, wallet, 110, key=f"redeem:race-{wid}", at=CLOSE_AT)
            outcome.append("spent")
        except PointsError:
            outcome.append("refused")

    def other() -> None:
        with any_sm() as s2:
            do(s2, "redeem" if first == "close" else "close")
            s2.commit()

    with any_sm() as s1:
        do(s1, first)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and len(outcome) == 1
        s1.commit()
    thread.join(10)
    assert outcome == ([100, "refused"] if first == "close" else ["spent", 0])
    with any_sm() as s:
        wallet = s.get(Wallet, wid)
        assert wallet is not None and wallet.balance == (20 if first == "close" else 10)
        assert points.check(s) == []


def test_a_pooled_earn_taken_back_is_owed_by_the_member(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        pool, w = make_loyalty(s), make_loyalty(s)
        member(s, w, pool=pool.account_id)
        earn(s, w, 50, "pooled-sale", earned_at=T(2026, 11, 5))
        assert close.close_account(s, w.account_id, "2026-11", CLOSE_AT, expiry_months=24).pooled == 50
        points.reverse_earn(s, "pooled-sale", T(2026, 12, 3), "ops")
        assert (w.balance, pool.balance) == (-50, 50)
        earn(s, w, 80, "next-sale", earned_at=T(2026, 12, 10))         # pays the 50 owed first
        done = close.close_account(s, w.account_id, "2026-12", T(2027, 1, 1, 6), expiry_months=24)
        assert done.pooled == 30 and (w.balance, pool.balance) == (0, 80) and points.check(s) == []
