"""Any sequence of earns, redeems, monthly closes, reversals and replays keeps the points ledger sound:
the balance is earned - redeemed - expired - earns taken back + redeems given back, each award's remaining
is what a plain model of "oldest first, debts paid first" says, expiry never touches points younger than
its cutoff, and registry.loyalty.points.check finds nothing (hypothesis, real SQLite)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_loyalty_points import make_loyalty

from registry.db import open_database
from registry.loyalty import close, points
from registry.loyalty.points import PointsError
from registry.models import LoyaltyMember, Movement, PointAllocation, PointAward, Wallet

START = dt.datetime(2024, 1, 1)
EXPIRY_MONTHS = 2               # short, so that sequences reach it
RUN = itertools.count()


@dataclass
class Model:
    """What the points should be: awards (key -> [earned_at, order, remaining]), spends' allocations,
    debts (reversal key -> owed), and the totals by kind."""

    awards: dict[str, list[Any]] = field(default_factory=dict)
    used: dict[str, dict[str, int]] = field(default_factory=dict)
    debts: dict[str, int] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("earned", "redeemed", "expired", "taken_back", "given_back"), 0))

    def balance(self) -> int:
        return int(sum(a[2] for a in self.awards.values())) - sum(self.debts.values())

    def oldest(self, before: dt.datetime | None = None) -> list[str]:
        keys = sorted(self.awards, key=lambda k: (self.awards[k][0], self.awards[k][1]))
        return [k for k in keys if before is None or self.awards[k][0] < before]

    def take(self, spend: str, keys: list[str], points: int) -> int:
        taken = 0
        for key in keys:
            share = min(self.awards[key][2], points - taken)
            if share > 0:
                self.awards[key][2] -= share
                self.used.setdefault(spend, {})
                self.used[spend][key] = self.used[spend].get(key, 0) + share
                taken += share
        return taken

    def pay_debts(self) -> None:
        for key in list(self.debts):
            paid = self.take(key, self.oldest(), self.debts[key])
            self.debts[key] -= paid
            if self.debts[key]:
                break
            del self.debts[key]


STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 400), st.integers(0, 90)),     # points, days backdated
    st.tuples(st.just("redeem"), st.integers(1, 600)),
    st.tuples(st.just("advance"), st.integers(1, 60 * 24)),                  # hours
    st.tuples(st.just("close")),
    st.tuples(st.just("reverse_earn"), st.integers(0, 99)),
    st.tuples(st.just("reverse_redeem"), st.integers(0, 99)),
    st.tuples(st.just("replay"), st.integers(0, 99)),
)


@pytest.fixture(scope="module")
def shared_sm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(f"sqlite:///{tmp_path_factory.mktemp('points') / 'registry.db'}")
    yield made
    engine.dispose()


def _remaining(s: Session, wallet: Wallet) -> dict[str, int]:
    rows = s.execute(select(Movement.key, PointAward.remaining)
                     .join(PointAward, PointAward.movement_id == Movement.id)
                     .where(PointAward.wallet_id == wallet.id))
    return {key: int(left) for key, left in rows}


def _sums(s: Session, wallet: Wallet) -> dict[str, int]:
    rows = s.execute(select(Movement.kind, Movement.key, Movement.amount)
                     .where(Movement.wallet_id == wallet.id))
    out = dict.fromkeys(("earned", "redeemed", "expired", "taken_back", "given_back"), 0)
    for kind, key, amount in rows:
        name = {"earn": "earned", "redeem": "redeemed", "expiry": "expired"}.get(kind)
        if name is None:
            name = "taken_back" if key.startswith("reversal:earn:") else "given_back"
        out[name] += abs(amount)
    return out


def _step(s: Session, w: Wallet, m: Model, step: tuple[Any, ...], now: dt.datetime, run: int,
          n: int) -> dt.datetime:
    kind = step[0]
    earns = [k for k in m.awards if k.startswith("earn:")]
    redeems = [k for k in m.used if k.startswith("redeem:")]
    if kind == "earn":
        key = f"earn:{run}-{n}"
        points.award(s, w, step[1], key=key, at=now, station="S1", product_group="fuel", sale_id=key[5:],
                     earned_at=now - dt.timedelta(days=step[2]))
        m.awards[key] = [now - dt.timedelta(days=step[2]), n, step[1]]
        m.totals["earned"] += step[1]
        m.pay_debts()
    elif kind == "redeem":
        key = f"redeem:{run}-{n}"
        if step[1] > m.balance():
            with pytest.raises(PointsError, match="not enough points"):
                points.spend(s, w, step[1], key=key, at=now)
        else:
            points.spend(s, w, step[1], key=key, at=now)
            assert m.take(key, m.oldest(), step[1]) == step[1]
            m.totals["redeemed"] += step[1]
    elif kind == "advance":
        return now + dt.timedelta(hours=step[1])
    elif kind == "close":
        month = f"{close.next_month(now.date().replace(day=1), -1):%Y-%m}"
        done = close.close_account(s, w.account_id, month, now, expiry_months=EXPIRY_MONTHS)
        cutoff = dt.datetime.combine(close.expiry_cutoff(month, EXPIRY_MONTHS), dt.time(0))
        due = 0
        if month not in m.closed:           # once a month's expiry is booked, a second run books none
            due = m.take(f"expiry:{month}", m.oldest(before=cutoff), m.balance() + sum(m.debts.values()))
            assert all(m.awards[k][2] == 0 for k in m.oldest(before=cutoff))
            if due:
                m.closed.add(month)
        assert done.expired == due
        m.totals["expired"] += due
    elif kind == "reverse_earn" and earns:
        key = earns[step[1] % len(earns)]
        rkey = "reversal:" + key
        if points.reverse_earn(s, key[5:], now, "ops") is not None and rkey not in m.used \
                and rkey not in m.debts:
            pts = _points(s, key)
            own = m.take(rkey, [key], pts)              # its own award first, then the oldest
            rest = m.take(rkey, m.oldest(), pts - own)
            if own + rest < pts:
                m.debts[rkey] = pts - own - rest
            m.totals["taken_back"] += pts
    elif kind == "reverse_redeem" and redeems:
        key = redeems[step[1] % len(redeems)]
        first = ("reversal:" + key) not in m.used
        points.reverse_spend(s, key, now, "ops")
        if first:
            m.used["reversal:" + key] = {}
            for award_key, share in m.used[key].items():
                m.awards[award_key][2] += share
            m.totals["given_back"] += sum(m.used[key].values())
            m.pay_debts()
    elif kind == "replay" and earns:
        key = earns[step[1] % len(earns)]
        before = w.balance
        points.award(s, w, _points(s, key), key=key, at=now, station="S1", product_group="fuel",
                     sale_id=key[5:])
        assert w.balance == before
    return now


def _points(s: Session, key: str) -> int:
    return int(s.scalars(select(Movement.amount).where(Movement.key == key)).one())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(STEP, max_size=30))
def test_any_sequence_keeps_the_points_ledger(shared_sm: sessionmaker[Session],
                                             steps: list[tuple[Any, ...]]) -> None:
    run = next(RUN)
    model = Model()
    now = START
    with shared_sm() as s:
        w = make_loyalty(s, name=f"run {run}")
        for n, step in enumerate(steps):
            now = _step(s, w, model, step, now, run, n)
            assert w.balance == model.balance()
            assert _remaining(s, w) == {k: a[2] for k, a in model.awards.items()}
        s.commit()
        t = model.totals
        assert w.balance == t["earned"] - t["redeemed"] - t["expired"] - t["taken_back"] + t["given_back"]
        assert _sums(s, w) == t
        if w.balance >= 0:
            assert w.balance == sum(_remaining(s, w).values())
        expiries = select(Movement.id).where(Movement.wallet_id == w.id, Movement.kind == "expiry")
        for award_id, spend in s.execute(select(PointAllocation.award_id, PointAllocation.spend_id)
                                         .where(PointAllocation.spend_id.in_(expiries))):
            month = s.scalars(select(Movement.key).where(Movement.id == spend)).one().rsplit(":", 1)[1]
            earned = s.scalars(select(PointAward.earned_at).where(PointAward.movement_id == award_id)).one()
            assert earned < dt.datetime.combine(close.expiry_cutoff(month, EXPIRY_MONTHS), dt.time(0))
        assert points.check(s) == []


POOL_STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 400), st.integers(0, 90)),
    st.tuples(st.just("redeem"), st.integers(1, 600)),
    st.tuples(st.just("advance"), st.integers(1, 60 * 24)),
    st.tuples(st.just("close")),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(POOL_STEP, max_size=20))
def test_pooling_keeps_every_point_and_its_age(shared_sm: sessionmaker[Session],
                                              steps: list[tuple[Any, ...]]) -> None:
    """A member earns, its pool redeems; closes expire and pool. Nothing is made or lost: member + pool ==
    earned - redeemed - expired; every pooled award carries the date of the member's award it came from."""
    run = next(RUN)
    now, earned, redeemed, expired = START, 0, 0, 0
    with shared_sm() as s:
        pool = make_loyalty(s, name=f"pool {run}")
        member = make_loyalty(s, name=f"member {run}")
        s.add_all([LoyaltyMember(account_id=pool.account_id, issued_on=START.date()),
                   LoyaltyMember(account_id=member.account_id, issued_on=START.date(),
                                 pool_account_id=pool.account_id)])
        s.flush()
        for n, step in enumerate(steps):
            if step[0] == "earn":
                points.award(s, member, step[1], key=f"earn:p{run}-{n}", at=now, station="S1",
                             product_group="shop", earned_at=now - dt.timedelta(days=step[2]))
                earned += step[1]
            elif step[0] == "redeem":
                try:
                    points.spend(s, pool, step[1], key=f"redeem:p{run}-{n}", at=now)
                    redeemed += step[1]
                except PointsError:
                    assert step[1] > pool.balance
            elif step[0] == "advance":
                now += dt.timedelta(hours=step[1])
            else:
                month = f"{close.next_month(now.date().replace(day=1), -1):%Y-%m}"
                for each in (member, pool):
                    expired += close.close_account(s, each.account_id, month, now,
                                                   expiry_months=EXPIRY_MONTHS).expired
            assert member.balance + pool.balance == earned - redeemed - expired
        s.commit()
        dates = dict(s.execute(select(PointAward.movement_id, PointAward.earned_at)
                               .where(PointAward.wallet_id == member.id)).all())
        moved = s.execute(select(Movement.key, PointAward.earned_at, PointAward.station_id)
                          .join(PointAward, PointAward.movement_id == Movement.id)
                          .where(PointAward.wallet_id == pool.id)).all()
        for key, earned_at, station in moved:       # pool:{member}:{month}:{award}:in
            assert station is None and earned_at == dates[int(key.split(":")[3])]
        assert points.check(s) == []
