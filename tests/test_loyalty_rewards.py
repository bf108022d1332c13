"""registry.loyalty.rewards and registry.loyalty.convert on a real registry, SQLite and PostgreSQL: the
catalogue and stock, redemption (points oldest first, stock, refusals), the weekly order list, returns,
the own-card flag, and conversion of points to wallet credit."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from registry.db import open_database
from registry.loyalty import convert, points, rewards
from registry.loyalty.rewards import RewardError
from registry.models import (
    Account,
    Attendant,
    AuditEntry,
    Base,
    Card,
    LoyaltyFlag,
    LoyaltyLink,
    LoyaltyMember,
    Movement,
    PointAllocation,
    PointAward,
    Product,
    RewardOrder,
    RewardStock,
    Station,
    Wallet,
)

NOW = dt.datetime(2026, 12, 2, 10, 0)            # a Wednesday of ISO week 2026-49
OPS = {"actor": "alice", "now": NOW}

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@dataclass
class World:
    s: Session
    sessions: sessionmaker[Session]
    account: int            # a loyalty account with 300 points (100 earned in October, 200 in November)
    wallet: int             # its points wallet
    pooled: int             # a member account pooled into `account`
    prepaid: int            # a prepaid account's money wallet


def loyalty_account(s: Session, name: str, *, pool: int | None = None) -> tuple[int, int]:
    account = Account(name=name, kind="loyalty", status="active", auth_seq=0)
    s.add(account)
    s.flush()
    s.add(LoyaltyMember(account_id=account.id, issued_on=dt.date(2026, 1, 1), pool_account_id=pool))
    wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
    s.add(wallet)
    s.flush()
    return account.id, wallet.id


def money_wallet(s: Session, kind: str, unit: str = "money") -> int:
    account = Account(name=f"{kind} card", kind=kind, status="active", auth_seq=0)
    s.add(account)
    s.flush()
    wallet = Wallet(account_id=account.id, allowed_products="", unit=unit, mode="prepaid")
    s.add(wallet)
    s.flush()
    return wallet.id


def earn(s: Session, wallet_id: int, amount: int, sale: str, at: dt.datetime) -> None:
    wallet = s.get(Wallet, wallet_id)
    assert wallet is not None
    points.award(s, wallet, amount, key=points.earn_key(sale), at=at, station="ST-001", product_group="fuel",
                 sale_id=sale)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    engine, sessions = open_database(pg_env.database_url(request, tmp_path))
    Base.metadata.drop_all(engine)               # each test starts from its own rows alone
    Base.metadata.create_all(engine)
    with sessions() as s:
        s.add_all([Station(id="ST-001", name="North"), Station(id="ST-002", name="South"),
                   Product(code="diesel", name="Diesel", code3="019")])
        s.flush()
        account, wallet = loyalty_account(s, "Dana")
        pooled, pooled_wallet = loyalty_account(s, "Dana's van", pool=account)
        s.add_all([Card(token="tok-dana", masked="7077********0019", account_id=account, expiry="2912",
                        pin_verifier="", status="active"),
                   Attendant(id="A1", name="Ann", card_token="tok-ann", pin_verifier="-", created_at=NOW),
                   Attendant(id="A2", name="Bob", card_token="tok-bob", pin_verifier="-", created_at=NOW)])
        earn(s, wallet, 100, "sale-oct", dt.datetime(2026, 10, 5, 9, 0))
        earn(s, wallet, 200, "sale-nov", dt.datetime(2026, 11, 5, 9, 0))
        earn(s, pooled_wallet, 500, "sale-van", dt.datetime(2026, 11, 6, 9, 0))
        prepaid = money_wallet(s, "prepaid")
        s.commit()
        yield World(s, sessions, account, wallet, pooled, prepaid)
    engine.dispose()


def balance(w: World, wallet: int | None = None) -> int:
    w.s.expire_all()
    found = w.s.get(Wallet, wallet or w.wallet)
    assert found is not None
    return found.balance


def stock(w: World, reward: int, station: str = "ST-001") -> int:
    w.s.expire_all()
    row = w.s.get(RewardStock, (reward, station))
    return row.quantity if row is not None else 0


def a_reward(w: World, price: int = 150, quantity: int = 2) -> int:
    reward = rewards.add_reward(w.s, "Travel mug", price, **OPS)
    rewards.set_stock(w.s, reward.id, "ST-001", quantity, **OPS)
    w.s.commit()
    return reward.id


def test_catalogue_and_stock_changes_are_checked_and_audited(world: World) -> None:
    s = world.s
    reward = a_reward(world)
    rewards.set_price(s, reward, 180, **OPS)
    rewards.adjust_stock(s, reward, "ST-001", 3, reason="delivery", **OPS)
    assert stock(world, reward) == 5
    with pytest.raises(RewardError):
        rewards.adjust_stock(s, reward, "ST-001", -6, **OPS)
    assert stock(world, reward) == 5
    for bad in (lambda: rewards.add_reward(s, "Mug", 0, **OPS), lambda: rewards.add_reward(s, " ", 10, **OPS),
                lambda: rewards.set_stock(s, reward, "ST-001", -1, **OPS),
                lambda: rewards.set_stock(s, reward, "ST-404", 1, **OPS),
                lambda: rewards.set_price(s, 999, 10, **OPS)):
        with pytest.raises(ConfigError):
            bad()
    rewards.withdraw(s, reward, reason="discontinued", **OPS)
    with pytest.raises(RewardError, match="withdrawn"):
        rewards.set_price(s, reward, 10, **OPS)
    actions = [a for (a,) in s.execute(select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions == ["reward.add", "reward.stock", "reward.price", "reward.stock_adjust", "reward.withdraw"]
    price = json.loads(s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "reward.price")).one())
    assert (price["old"], price["new"]) == (150, 180)


def test_redeem_handed_over_spends_the_oldest_points_and_takes_one_from_stock(world: World) -> None:
    s = world.s
    reward = a_reward(world, price=150)
    order = rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="A2",
                           handed_over=True, key="r-1", now=NOW)
    s.commit()
    assert (order.status, order.batch, order.attendant_id) == ("handed_over", None, "A2")
    assert balance(world) == 150 and stock(world, reward) == 1
    spent = s.get(Movement, order.movement_id)
    assert spent is not None and (spent.key, spent.kind, spent.amount) == ("redeem:r-1", "redeem", -150)
    used = dict(s.execute(select(PointAward.earned_at, PointAllocation.points)
                          .join(PointAllocation, PointAllocation.award_id == PointAward.movement_id)
                          .where(PointAllocation.spend_id == spent.id)).all())
    assert used == {dt.datetime(2026, 10, 5, 9, 0): 100, dt.datetime(2026, 11, 5, 9, 0): 50}
    again = rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="A2",
                           handed_over=True, key="r-1", now=NOW)
    s.commit()
    assert again.id == order.id and balance(world) == 150 and stock(world, reward) == 1
    with pytest.raises(RewardError, match="another redemption"):
        rewards.redeem(s, account=world.account, reward=reward, station="ST-002", attendant="A2",
                       handed_over=False, key="r-1", now=NOW)
    assert s.scalar(select(func.count()).select_from(LoyaltyFlag)) == 0    # A2's card is not Dana's
    assert points.check(s) == []


def test_redeem_refusals_change_nothing(world: World) -> None:
    s = world.s
    reward = a_reward(world, price=150, quantity=0)
    dear = a_reward(world, price=301)
    cases = [({"account": world.account, "reward": reward, "handed_over": True}, "out of stock"),
             ({"account": world.account, "reward": dear, "handed_over": False}, "not enough points"),
             ({"account": world.pooled, "reward": reward, "handed_over": False}, "pooled")]
    for args, message in cases:
        with pytest.raises(RewardError, match=message):
            rewards.redeem(s, station="ST-001", attendant="", key="r-x", now=NOW, **args)  # type: ignore[arg-type]
        s.rollback()
    assert balance(world) == 300 and stock(world, dear) == 2
    assert s.scalar(select(func.count()).select_from(Movement).where(Movement.kind == "redeem")) == 0
    with pytest.raises(ConfigError):
        rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="nobody",
                       handed_over=False, key="r-y", now=NOW)
    s.rollback()
    ordered = rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="",
                             handed_over=False, key="r-z", now=NOW)
    s.commit()
    assert ordered.status == "pending" and stock(world, reward) == 0 and balance(world) == 150


def order(w: World, reward: int, key: str, at: dt.datetime, station: str = "ST-001") -> int:
    made = rewards.redeem(w.s, account=w.account, reward=reward, station=station, attendant="",
                          handed_over=False, key=key, now=at)
    w.s.commit()
    return made.id


def test_the_weekly_list_takes_pending_orders_once(world: World) -> None:
    s = world.s
    mug, cap = a_reward(world, price=50), a_reward(world, price=20)
    first = order(world, mug, "o-1", dt.datetime(2026, 11, 30, 8, 0))        # Monday of W49
    second = order(world, mug, "o-2", dt.datetime(2026, 12, 6, 23, 59))      # Sunday of W49
    third = order(world, cap, "o-3", dt.datetime(2026, 12, 1, 8, 0), station="ST-002")
    after = order(world, cap, "o-4", dt.datetime(2026, 12, 7, 0, 0))         # Monday of W50
    with pytest.raises(RewardError, match="not ended"):
        rewards.consolidate_week(s, "W2026-49", NOW)
    ended = dt.datetime(2026, 12, 7, 6, 0)
    lines = rewards.consolidate_week(s, "W2026-49", ended)
    s.commit()
    assert [(x.station_id, x.reward_id, x.quantity, x.orders) for x in lines] == [
        ("ST-001", mug, 2, (first, second)), ("ST-002", cap, 1, (third,))]
    late = order(world, mug, "o-5", dt.datetime(2026, 12, 3, 12, 0))        # synced late, dated in W49
    assert rewards.consolidate_week(s, "W2026-49", ended + dt.timedelta(days=1)) == lines
    s.commit()
    week50 = rewards.consolidate_week(s, "W2026-50", dt.datetime(2026, 12, 14))
    assert [(x.reward_id, x.orders) for x in week50] == [(mug, (late,)), (cap, (after,))]
    assert {o.status for o in rewards.orders(s)} == {"listed"}
    for bad in ("2026-49", "W2026-54", "W26-1"):
        with pytest.raises(ConfigError):
            rewards.consolidate_week(s, bad, ended)


def test_a_return_gives_the_points_back_once_and_the_stock(world: World) -> None:
    s = world.s
    reward = a_reward(world, price=250)
    handed = rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="",
                            handed_over=True, key="r-1", now=NOW)
    s.commit()
    assert balance(world) == 50 and stock(world, reward) == 1
    later = NOW + dt.timedelta(hours=1)
    assert rewards.return_order(s, handed.id, later, "alice").status == "returned"
    s.commit()
    assert balance(world) == 300 and stock(world, reward) == 2
    rewards.return_order(s, handed.id, later, "alice")
    s.commit()
    assert balance(world) == 300 and stock(world, reward) == 2
    oldest = s.scalars(select(PointAward).order_by(PointAward.earned_at)).first()
    assert oldest is not None and oldest.remaining == oldest.points == 100     # the points keep their age
    pending = rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant="",
                             handed_over=False, key="r-2", now=later)
    s.commit()
    rewards.return_order(s, pending.id, later, "alice")
    s.commit()
    assert balance(world) == 300 and stock(world, reward) == 2     # nothing was at the station
    assert points.check(s) == []
    returns = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "reward.return")
    assert s.scalar(returns) == 2


def test_an_attendant_redeeming_on_their_own_card_is_flagged(world: World) -> None:
    s = world.s
    reward = a_reward(world, price=10, quantity=5)
    s.add(Card(token="tok-ann", masked="7077********0027", account_id=world.account, expiry="2912",
               pin_verifier="", status="active"))
    s.add(LoyaltyLink(token="tok-bob", account_id=world.account, masked="4111********1111", created_at=NOW))
    s.commit()
    for n, who in enumerate(["A1", "A2", ""]):
        rewards.redeem(s, account=world.account, reward=reward, station="ST-001", attendant=who,
                       handed_over=True, key=f"own-{n}", now=NOW)
    s.commit()
    flags = s.scalars(select(LoyaltyFlag).order_by(LoyaltyFlag.id)).all()
    assert [(f.kind, f.attendant_id, f.account_id) for f in flags] == [
        ("own_card", "A1", world.account), ("own_card", "A2", world.account)]
    assert balance(world) == 270                                    # flagged, and done all the same
    assert all("tok-" not in f.detail for f in flags)


def test_two_terminals_racing_for_the_last_one_hand_over_one(world: World) -> None:
    s = world.s
    other, _ = loyalty_account(s, "Eve")
    s.commit()
    earn(s, s.scalars(select(Wallet.id).where(Wallet.account_id == other)).one(), 300, "sale-eve", NOW)
    reward = a_reward(world, price=100, quantity=1)
    results: list[str] = []
    start = threading.Barrier(2)

    def take(account: int, key: str) -> None:
        with world.sessions() as mine:
            start.wait()
            try:
                rewards.redeem(mine, account=account, reward=reward, station="ST-001", attendant="",
                               handed_over=True, key=key, now=NOW)
                mine.commit()
                results.append("handed")
            except RewardError:
                mine.rollback()
                results.append("refused")

    pairs = ((world.account, "t-1"), (other, "t-2"))
    threads = [threading.Thread(target=take, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["handed", "refused"]
    assert stock(world, reward) == 0
    assert s.scalar(select(func.count()).select_from(RewardOrder)) == 1
    assert points.check(s) == []


# -- conversion ----------------------------------------------------------------------------------------------

def test_value_is_the_band_rate_rounded_down_to_the_cent() -> None:
    bands = [convert.Band(100, 500), convert.Band(1000, 750)]
    assert [convert.value_cents(bands, p) for p in (100, 101, 999, 1000, 1001)] == [50, 50, 499, 750, 750]
    with pytest.raises(RewardError, match="too few"):
        convert.value_cents(bands, 99)
    with pytest.raises(RewardError, match="no conversion table"):
        convert.value_cents([], 100)


def test_convert_spends_points_and_credits_the_wallet_once(world: World) -> None:
    s = world.s
    convert.set_table(s, [(100, 1500), (50, 1333)], **OPS)
    assert convert.table(s) == [convert.Band(50, 1333), convert.Band(100, 1500)]
    done = convert.convert(s, account=world.account, points=77, wallet=world.prepaid, key="c-1", now=NOW,
                           attendant="A2")
    s.commit()
    assert (done.points, done.cents) == (77, 102)                    # 77 x 1.333 ct = 102.641 -> 102
    assert (done.spent.key, done.spent.amount, done.credited.key, done.credited.kind) == (
        "convert:c-1:points", -77, "convert:c-1", "topup")
    assert balance(world) == 223 and balance(world, world.prepaid) == 102
    again = convert.convert(s, account=world.account, points=77, wallet=world.prepaid, key="c-1", now=NOW,
                            attendant="A2")
    s.commit()
    assert again.credited.id == done.credited.id and balance(world, world.prepaid) == 102
    with pytest.raises(RewardError, match="another conversion"):
        convert.convert(s, account=world.account, points=78, wallet=world.prepaid, key="c-1", now=NOW,
                        attendant="")
    for kind in ("gift", "fleet"):
        target = money_wallet(s, kind)
        convert.convert(s, account=world.account, points=100, wallet=target, key=f"c-{kind}", now=NOW,
                        attendant="")
        s.commit()
        assert balance(world, target) == 150
    assert balance(world) == 23 and points.check(s) == []


def test_a_refused_conversion_books_neither_side(world: World) -> None:
    s = world.s
    convert.set_table(s, [(10, 1000)], **OPS)
    litres = money_wallet(s, "fleet", unit="volume")
    closed = money_wallet(s, "gift")
    found = s.get(Wallet, closed)
    assert found is not None
    found.status = "closed"
    s.commit()
    cases = [({"account": world.account, "points": 301, "wallet": world.prepaid}, RewardError, "not enough"),
             ({"account": world.account, "points": 5, "wallet": world.prepaid}, RewardError, "too few"),
             ({"account": world.pooled, "points": 50, "wallet": world.prepaid}, RewardError, "pooled"),
             ({"account": world.account, "points": 50, "wallet": closed}, RewardError, "closed"),
             ({"account": world.account, "points": 50, "wallet": litres}, ConfigError, "money wallet"),
             ({"account": world.account, "points": 50, "wallet": world.wallet}, ConfigError, "money wallet")]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            convert.convert(s, key="c-x", now=NOW, attendant="", **args)  # type: ignore[arg-type]
        s.rollback()
    assert balance(world) == 300 and balance(world, world.prepaid) == 0
    assert s.scalar(select(func.count()).select_from(Movement).where(Movement.key.like("convert:%"))) == 0
    for bad in ([], [(0, 100)], [(10, 0)], [(10, 100), (10, 200)]):
        with pytest.raises(ConfigError):
            convert.set_table(s, bad, **OPS)


def test_converting_to_the_attendants_own_wallet_is_flagged(world: World) -> None:
    s = world.s
    convert.set_table(s, [(1, 1000)], **OPS)
    target = s.get(Wallet, world.prepaid)
    assert target is not None
    s.add(Card(token="tok-ann", masked="7077********0035", account_id=target.account_id, expiry="2912",
               pin_verifier="", status="active"))
    s.commit()
    convert.convert(s, account=world.account, points=10, wallet=world.prepaid, key="c-own", now=NOW,
                    attendant="A1")
    s.commit()
    flag = s.scalars(select(LoyaltyFlag)).one()
    assert (flag.kind, flag.attendant_id, flag.account_id) == ("own_card", "A1", world.account)
    assert balance(world, world.prepaid) == 10
