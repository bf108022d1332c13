"""Turnover reports: the summary path (daily tables + the sales above the watermark) equals a straight sum
over transactions, on random sales with late arrivals, voids, held sales and a time-zone change."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pg_env
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from registry.models import Account, Card, Customer, SalesDaily, Station, Transaction
from registry.turnover import BY, TurnoverQuery, plan, turnover
from registry.turnover_rollup import roll_up, watermark
from registry.voids import void_sale

sm = pg_env.sm
pg_url = pg_env.pg_url
any_sm = pg_env.any_sm

NOW = dt.datetime(2026, 6, 30, 12, 0)
START, END = dt.date(2026, 5, 1), dt.date(2026, 6, 30)
ZONES = {"S1": "UTC", "S2": "Europe/Moscow", "S3": "America/New_York"}
PRODUCTS = ["DIESEL", "E95", None]


def seed(s: Session) -> list[tuple[int | None, int | None]]:
    """Three stations in three zones, two customers with accounts and cards; (card, account) pairs."""
    for sid, tz in ZONES.items():
        s.add(Station(id=sid, name=f"Station {sid}", timezone=tz))
    pairs: list[tuple[int | None, int | None]] = [(None, None)]
    for c in range(2):
        customer = Customer(name=f"Customer {c}", created_at=NOW)
        s.add(customer)
        s.flush()
        for a in range(2):
            account = Account(name=f"Account {c}.{a}", customer_id=customer.id)
            s.add(account)
            s.flush()
            card = Card(token=uuid.uuid4().hex, masked=f"7000 **** **** {c}{a}00", expiry="2912",
                        pin_verifier="", account_id=account.id)
            s.add(card)
            s.flush()
            pairs.append((card.id, account.id))
    s.commit()
    return pairs


def sale(rnd: random.Random, pairs: list[tuple[int | None, int | None]], *,
         finished: dt.datetime | None = None, station: str | None = None) -> Transaction:
    card, account = rnd.choice(pairs)
    volume = rnd.choice([0, rnd.randrange(1, 8000)])
    price = rnd.choice([1659, 1799])
    at = finished or dt.datetime(2026, 4, 29) + dt.timedelta(seconds=rnd.randrange(64 * 86400))
    return Transaction(sale_id=str(uuid.uuid4()), kind="fleet" if card else "bank", device_id="T1",
                       station_id=station or rnd.choice(["S1", "S2", "S3", "SX"]), pump=rnd.randrange(1, 4),
                       nozzle=1, product=rnd.choice(PRODUCTS), volume_cl=volume,
                       amount_cents=volume * price // 1000, price_milli=price, card_masked="7000 **** 0000",
                       finished_at=at, received_at=NOW, held=rnd.random() < 0.05, card_id=card,
                       flags=rnd.choice(["", "", "", "voided", "recovered"]), account_id=account)


def queries(pairs: list[tuple[int | None, int | None]], customers: list[int]) -> Iterator[TurnoverQuery]:
    for by in BY:
        yield TurnoverQuery(START, END, by=by)
        yield TurnoverQuery(dt.date(2026, 5, 10), dt.date(2026, 5, 20), by=by, product="DIESEL")
        yield TurnoverQuery(START, END, by=by, stations=frozenset({"S2", "S3"}))
        yield TurnoverQuery(START, END, by=by, station="S1", product="")
        yield TurnoverQuery(START, END, by=by, customer_id=customers[0])
        yield TurnoverQuery(START, END, by=by, customer_id=customers[1], stations=frozenset({"S2"}))
        yield TurnoverQuery(START, END, by=by, card_id=pairs[1][0])


Row = tuple[Any, ...]


@dataclass(frozen=True)
class Seeded:
    """The stored rows, read plainly, to count a report again without the registry's turnover code."""
    sales: list[Transaction]
    zones: dict[str, str]                      # station id -> time zone
    owners: dict[int, int | None]              # account id -> customer id

    @classmethod
    def read(cls, s: Session) -> Seeded:
        return cls(list(s.scalars(select(Transaction)).all()),
                   {st.id: st.timezone for st in s.scalars(select(Station))},
                   {a.id: a.customer_id for a in s.scalars(select(Account))})

    def day(self, tx: Transaction) -> dt.date:
        """The sale's date on its station's wall clock (an unknown station keeps UTC)."""
        zone = ZoneInfo(self.zones.get(tx.station_id, "UTC"))
        return tx.finished_at.replace(tzinfo=dt.UTC).astimezone(zone).date()

    def wanted(self, q: TurnoverQuery, tx: Transaction) -> bool:
        if tx.held or "voided" in tx.flags.split(",") or (tx.volume_cl == 0 and tx.amount_cents == 0):
            return False
        if not q.start <= self.day(tx) <= q.end:
            return False
        if q.station is not None and tx.station_id != q.station:
            return False
        if q.stations is not None and tx.station_id not in q.stations:
            return False
        if q.product is not None and (tx.product or "") != q.product:
            return False
        customer = self.owners.get(tx.account_id) if tx.account_id is not None else None
        if q.customer_id is not None and customer != q.customer_id:
            return False
        if q.by == "customer" and tx.account_id is None:
            return False
        return q.card_id is None or tx.card_id == q.card_id

    def key(self, q: TurnoverQuery, tx: Transaction) -> Row:
        return {"station": (tx.station_id,), "pump": (tx.station_id, tx.pump), "product": (tx.product or "",),
                "card": (tx.card_id,), "day": (self.day(tx),),
                "customer": (self.owners.get(tx.account_id) if tx.account_id is not None else None,)}[q.by]

    def lines(self, q: TurnoverQuery) -> list[Row]:
        """(key, sales, volume, amount) per key, keys in order with None last."""
        sums: dict[Row, list[int]] = {}
        for tx in self.sales:
            if self.wanted(q, tx):
                total = sums.setdefault(self.key(q, tx), [0, 0, 0])
                total[0] += 1
                total[1] += tx.volume_cl
                total[2] += tx.amount_cents
        order = sorted(sums, key=lambda k: tuple((x is None, 0 if x is None else x) for x in k))
        return [(k, *sums[k]) for k in order]


def same(s: Session, q: TurnoverQuery, seeded: Seeded) -> None:
    """Both paths give the lines counted again in plain Python over the stored rows."""
    fast, slow = turnover(s, q), turnover(s, q, path="straight")
    expected = seeded.lines(q)
    assert [(x.key, x.sales, x.volume_cl, x.amount_cents) for x in fast.lines] == expected, (q, fast.path)
    assert [(x.key, x.sales, x.volume_cl, x.amount_cents) for x in slow.lines] == expected, q
    assert slow.path == "straight"


def check_all(s: Session, pairs: list[tuple[int | None, int | None]]) -> None:
    customers = sorted(s.scalars(select(Customer.id)).all())
    seeded = Seeded.read(s)
    assert any(seeded.lines(TurnoverQuery(START, END, by=by)) for by in BY)
    for q in queries(pairs, customers):
        same(s, q, seeded)


@pytest.mark.parametrize("seed_no", [1, 2])
def test_the_summary_equals_a_straight_sum_through_late_sales_voids_and_a_zone_change(
        sm: sessionmaker[Session], seed_no: int) -> None:
    rnd = random.Random(seed_no)
    with sm() as s:
        pairs = seed(s)
    for step in range(6):
        with sm() as s:
            s.add_all([sale(rnd, pairs) for _ in range(60)])
            s.commit()
        with sm() as s:
            rolled = roll_up(s, NOW, most=45)          # part of them: the rest is read straight
            s.commit()
        assert rolled.more
        with sm() as s:
            counted = s.scalars(select(Transaction).where(Transaction.held.is_(False),
                                                          Transaction.id <= rolled.sale_id)).all()
            for tx in rnd.sample(list(counted), 4):    # voided after they were counted (some twice)
                void_sale(s, tx.sale_id, actor="test", reason="returned", now=NOW)
            if step == 3:
                station = s.get(Station, "S1")
                assert station is not None
                station.timezone = "Asia/Tokyo"
            s.commit()
        if step % 2 or step == 3:
            with sm() as s:
                check_all(s, pairs)
    with sm() as s:
        while roll_up(s, NOW, most=100).more:
            s.commit()
        s.commit()
        assert watermark(s) == s.scalar(select(Transaction.id).order_by(Transaction.id.desc()).limit(1))
        check_all(s, pairs)
        assert turnover(s, TurnoverQuery(START, END)).lines


def test_a_late_sale_counts_on_its_own_day_before_and_after_the_rollup(sm: sessionmaker[Session]) -> None:
    rnd = random.Random(7)
    with sm() as s:
        pairs = seed(s)
        s.add_all([sale(rnd, pairs, station="S1") for _ in range(20)])
        s.commit()
        roll_up(s, NOW)
        s.commit()
        day = dt.date(2026, 5, 3)
        q = TurnoverQuery(day, day, by="day", station="S1")
        before = turnover(s, q).totals
        late = sale(rnd, pairs, station="S1", finished=dt.datetime(2026, 5, 3, 10))
        late.held, late.flags, late.volume_cl, late.amount_cents, late.product = False, "", 1000, 1659, "E95"
        s.add(late)
        s.commit()
        read = turnover(s, q)
        assert read.path == "station summary" and read.watermark < late.id
        assert (read.totals.sales, read.totals.volume_cl) == (before.sales + 1, before.volume_cl + 1000)
        roll_up(s, NOW)
        s.commit()
        assert turnover(s, q).totals == read.totals
        assert s.scalar(select(SalesDaily.sales).where(SalesDaily.day == day, SalesDaily.station_id == "S1",
                                                       SalesDaily.pump == late.pump,
                                                       SalesDaily.product == late.product))


def test_a_sale_counts_on_its_stations_local_day(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        pairs = seed(s)
        for sid in ("S1", "S2"):
            tx = sale(random.Random(1), pairs, station=sid, finished=dt.datetime(2026, 5, 1, 22, 30))
            tx.held, tx.flags, tx.volume_cl, tx.amount_cents, tx.product = False, "", 500, 830, "E95"
            s.add(tx)
        s.commit()
        q = TurnoverQuery(dt.date(2026, 5, 2), dt.date(2026, 5, 2), by="station")
        assert [line.key for line in turnover(s, q).lines] == [("S2",)]     # Moscow: already the 2nd
        roll_up(s, NOW)
        s.commit()
        assert [line.key for line in turnover(s, q).lines] == [("S2",)]
        by_day = TurnoverQuery(START, END, by="day")
        assert [(x.key, x.sales) for x in turnover(s, by_day).lines] == [((dt.date(2026, 5, 1),), 1),
                                                                          ((dt.date(2026, 5, 2),), 1)]


def test_a_station_manager_sees_only_their_stations(sm: sessionmaker[Session]) -> None:
    rnd = random.Random(3)
    with sm() as s:
        pairs = seed(s)
        s.add_all([sale(rnd, pairs) for _ in range(80)])
        s.commit()
        roll_up(s, NOW)
        s.commit()
        mine = frozenset({"S2"})
        for by in ("station", "pump"):
            read = turnover(s, TurnoverQuery(START, END, by=by, stations=mine))
            keys = {line.key[0] for line in read.lines}
            assert keys == {"S2"}
        assert turnover(s, TurnoverQuery(START, END, station="S1", stations=mine)).lines == []
        other = turnover(s, TurnoverQuery(START, END, by="card", station="S1", stations=mine))
        assert other.lines == [] and other.path == "straight"


def test_each_report_reads_the_cheapest_exact_source() -> None:
    assert plan(TurnoverQuery(START, END, by="station")) == "station summary"
    assert plan(TurnoverQuery(START, END, by="pump", product="E95", stations=frozenset({"S1"}))) \
        == "station summary"
    assert plan(TurnoverQuery(START, END, by="customer")) == "account summary"
    assert plan(TurnoverQuery(START, END, by="day", customer_id=1)) == "account summary"
    assert plan(TurnoverQuery(START, END, by="customer", stations=frozenset({"S1"}))) == "straight"
    assert plan(TurnoverQuery(START, END, by="station", card_id=3)) == "straight"


@pytest.mark.parametrize(("query", "key"), [
    (TurnoverQuery(START, END, by="vehicle"), "by"),
    (TurnoverQuery(END, START), "end"),
    (TurnoverQuery(dt.date(2020, 1, 1), END), "start")])
def test_a_report_outside_its_bounds_is_refused(sm: sessionmaker[Session], query: TurnoverQuery,
                                                key: str) -> None:
    with sm() as s, pytest.raises(ConfigError) as refused:
        turnover(s, query)
    assert refused.value.context["key"] == key


@pytest.mark.system
def test_the_summary_equals_a_straight_sum_on_postgresql(pg_url: str) -> None:
    from registry.db import open_database

    engine, made = open_database(pg_url)
    try:
        rnd = random.Random(11)
        with made() as s:
            pairs = seed(s)
            s.add_all([sale(rnd, pairs) for _ in range(200)])
            s.commit()
        with made() as s:
            roll_up(s, NOW, most=120)
            s.commit()
        with made() as s:
            counted = s.scalars(select(Transaction).where(Transaction.id <= watermark(s))).all()
            for tx in rnd.sample(list(counted), 10):
                void_sale(s, tx.sale_id, actor="test", reason="returned", now=NOW)
            s.commit()
        with made() as s:
            check_all(s, pairs)
            roll_up(s, NOW)
            s.commit()
            check_all(s, pairs)
    finally:
        engine.dispose()


def test_points_granted_taken_back_and_settled_per_station(sm: sessionmaker[Session]) -> None:
    from registry.loyalty import admin, points, settlement
    from registry.models import Wallet
    from registry.turnover_loyalty import points_by_station

    ops = {"actor": "test", "now": NOW}
    with sm() as s:
        seed(s)
        account = admin.create_account(s, "Dana", issued_on=dt.date(2026, 5, 1), **ops)
        wallet = s.scalars(select(Wallet).where(Wallet.account_id == account.id)).one()
        for n, (station, at, amount) in enumerate([("S1", dt.datetime(2026, 5, 3, 12), 40),
                                                   ("S1", dt.datetime(2026, 5, 4, 12), 60),
                                                   ("S2", dt.datetime(2026, 5, 31, 22), 7)]):  # Moscow: June
            points.award(s, wallet, amount, key=points.earn_key(f"sale-{n}"), at=at, station=station,
                         product_group="fuel", sale_id=f"sale-{n}")
        points.reverse_earn(s, "sale-1", NOW, "test")
        settlement.set_value(s, "S1", "fuel", dt.date(2026, 1, 1), 500, **ops)
        settlement.settle(s, "S1", dt.date(2026, 5, 1), dt.date(2026, 5, 31), "test", NOW)
        s.commit()
        may = points_by_station(s, dt.date(2026, 5, 1), dt.date(2026, 5, 31))
        # the reversal is dated after the period: the next settlement deducts it
        assert [(p.station_id, p.granted, p.taken_back, p.settled_points, p.settled_cents) for p in may] \
            == [("S1", 100, 60, 100, 50)]
        june = points_by_station(s, dt.date(2026, 6, 1), dt.date(2026, 6, 30))
        assert [(p.station_id, p.granted) for p in june] == [("S2", 7)]
        assert points_by_station(s, dt.date(2026, 5, 1), dt.date(2026, 6, 30), {"S2"})[0].station_id == "S2"
