"""registry.loyalty.settlement on a real registry, SQLite and PostgreSQL: station point values, a period's
lines per product group at the values in force on each award's day, written once and re-printed as
written, and the refusals (a period not ended, overlapping, without a value)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg_env
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from forecourtcli.main import main
from registry.db import open_database
from registry.loyalty import points, rewards, settlement
from registry.loyalty.rewards import RewardError
from registry.models import (
    Account,
    AuditEntry,
    Base,
    LoyaltySettlement,
    Movement,
    PointAward,
    Station,
    Wallet,
)

NOW = dt.datetime(2026, 12, 2, 10, 0)
NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
OPS: dict[str, Any] = {"actor": "alice", "now": NOW}

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@dataclass
class World:
    s: Session
    wallet: Wallet


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    engine, sessions = open_database(pg_env.database_url(request, tmp_path))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with sessions() as s:
        s.add_all([Station(id="ST-001", name="North"), Station(id="ST-002", name="South")])
        account = Account(name="Dana", kind="loyalty", status="active", auth_seq=0)
        s.add(account)
        s.flush()
        wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
        s.add(wallet)
        s.commit()
        yield World(s, wallet)
    engine.dispose()


def earn(w: World, points_: int, sale: str, day: int, *, month: int = 11, station: str = "ST-001",
         group: str = "fuel") -> None:
    at = dt.datetime(2026, month, day, 12, 0)
    points.award(w.s, w.wallet, points_, key=points.earn_key(sale), at=at, station=station,
                 product_group=group, sale_id=sale)


def values(w: World) -> None:
    settlement.set_value(w.s, "ST-001", "fuel", dt.date(2026, 1, 1), 500, **OPS)      # 0.5 ct a point
    settlement.set_value(w.s, "ST-001", "*", dt.date(2026, 1, 1), 1250, **OPS)


def lines(rows: list[LoyaltySettlement]) -> list[tuple[str, int, int, int]]:
    return [(r.product_group, r.points, r.milli_cents, r.amount_cents) for r in rows]


def test_values_are_checked_and_audited(world: World) -> None:
    s = world.s
    values(world)
    settlement.set_value(s, "ST-001", "fuel", dt.date(2026, 1, 1), 600, **OPS)       # corrected in place
    assert [(v.product_group, v.milli_cents) for v in settlement.values(s, "ST-001")] == [("*", 1250),
                                                                                          ("fuel", 600)]
    for station, group, value in (("ST-404", "fuel", 1), ("ST-001", "Fuel", 1), ("ST-001", "", 1),
                                  ("ST-001", "fuel", -1), ("ST-001", "fuel", 10**6 + 1)):
        with pytest.raises(ConfigError):
            settlement.set_value(s, station, group, dt.date(2026, 1, 1), value, **OPS)
    assert s.scalar(select(func.count()).select_from(AuditEntry)
                    .where(AuditEntry.action == "settlement.value")) == 3


def test_a_period_is_settled_by_group_at_the_value_of_each_award_day(world: World) -> None:
    s = world.s
    values(world)
    settlement.set_value(s, "ST-001", "shop", dt.date(2026, 11, 16), 2000, **OPS)   # from mid-month
    earn(world, 333, "f1", 2)
    earn(world, 100, "f2", 30)
    earn(world, 7, "s1", 3, group="shop")          # at "*": 1.25 ct
    earn(world, 10, "s2", 20, group="shop")        # at 2 ct
    earn(world, 50, "gone", 10)                    # returned in November: not granted
    earn(world, 900, "other", 5, station="ST-002")
    earn(world, 900, "december", 1, month=12)
    earn(world, 60, "late-return", 29)             # returned in December: that period's
    s.flush()
    points.reverse_earn(s, "gone", dt.datetime(2026, 11, 11), "alice")
    points.reverse_earn(s, "late-return", dt.datetime(2026, 12, 1, 8, 0), "alice")
    points.award(s, world.wallet, 40, key="pool:9:2026-11:in", at=dt.datetime(2026, 11, 15),
                 kind="transfer_in", station="ST-001", product_group="fuel")      # pooled: not granted here
    s.commit()
    rows = settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.commit()
    # fuel 493 points x 0.5 ct = 246.5 -> 246; shop: one line per value, 7 x 1.25 = 8.75 -> 8 and 10 x 2
    assert lines(rows) == [("fuel", 493, 500, 246), ("shop", 7, 1250, 8), ("shop", 10, 2000, 20)]
    assert {(r.actor, r.created_at) for r in rows} == {("alice", NOW)}
    december = settlement.settle(s, "ST-001", dt.date(2026, 12, 1), dt.date(2026, 12, 1), "bob",
                                 dt.datetime(2026, 12, 2))
    assert lines(december) == [("fuel", 900 - 60, 500, 420)]


def test_asked_again_it_returns_the_lines_as_written(world: World) -> None:
    s = world.s
    values(world)
    earn(world, 1000, "f1", 2)
    first = settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.commit()
    printed = settlement.printout(first)
    settlement.set_value(s, "ST-001", "fuel", dt.date(2026, 1, 1), 9000, **OPS)     # values change since
    earn(world, 500, "synced-late", 15)                                            # a sale arrives late
    s.commit()
    again = settlement.settle(s, "ST-001", *NOV, "bob", NOW + dt.timedelta(days=30))
    assert [r.id for r in again] == [r.id for r in first]
    assert lines(again) == [("fuel", 1000, 500, 500)]
    assert settlement.printout(again) == printed
    assert "fuel" in printed and "5.00" in printed and "0.500" in printed and "by alice" in printed
    assert s.scalar(select(func.count()).select_from(AuditEntry)
                    .where(AuditEntry.action == "settlement.run")) == 1


def test_a_period_without_points_is_settled_as_nothing_once(world: World) -> None:
    s = world.s
    values(world)
    rows = settlement.settle(s, "ST-002", *NOV, "alice", NOW)
    s.commit()
    assert lines(rows) == [(settlement.NOTHING, 0, 0, 0)]
    earn(world, 100, "late", 3, station="ST-002")
    s.commit()
    assert lines(settlement.settle(s, "ST-002", *NOV, "alice", NOW)) == [(settlement.NOTHING, 0, 0, 0)]
    assert "nothing granted" in settlement.printout(rows)


def test_refusals_write_nothing(world: World) -> None:
    s = world.s
    earn(world, 100, "f1", 2, group="carwash")
    s.commit()
    with pytest.raises(ConfigError, match="no point value"):
        settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.rollback()
    values(world)
    with pytest.raises(RewardError, match="not ended"):
        settlement.settle(s, "ST-001", dt.date(2026, 11, 1), dt.date(2026, 12, 2), "alice", NOW)
    with pytest.raises(ConfigError):
        settlement.settle(s, "ST-001", dt.date(2026, 11, 30), dt.date(2026, 11, 1), "alice", NOW)
    with pytest.raises(ConfigError):
        settlement.settle(s, "ST-404", *NOV, "alice", NOW)
    assert s.scalar(select(func.count()).select_from(LoyaltySettlement)) == 0
    settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.commit()
    with pytest.raises(RewardError, match="overlaps"):
        settlement.settle(s, "ST-001", dt.date(2026, 11, 30), dt.date(2026, 12, 1), "alice", NOW)
    assert s.scalar(select(func.count()).select_from(LoyaltySettlement)) == 1
    assert settlement.printout([]) == "no settlement\n"


def paid_by(w: World, sale: str) -> LoyaltySettlement | None:
    """The settlement line that paid the station for a sale's earn award (None: not paid yet)."""
    w.s.expire_all()
    award = w.s.scalar(select(PointAward).join(Movement, Movement.id == PointAward.movement_id)
                       .where(Movement.key == points.earn_key(sale)))
    assert award is not None
    return None if award.settlement_id is None else w.s.get(LoyaltySettlement, award.settlement_id)


DEC = (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
JAN2 = dt.datetime(2027, 1, 2, 9, 0)


def test_a_late_sale_is_paid_by_the_next_settlement_once(world: World) -> None:
    s = world.s
    values(world)
    settlement.set_value(s, "ST-001", "fuel", dt.date(2026, 12, 1), 800, **OPS)   # from December
    earn(world, 1000, "f1", 2)
    s.commit()
    november = settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.commit()
    assert lines(november) == [("fuel", 1000, 500, 500)]
    earn(world, 300, "late", 28)                   # a November sale synced after November was settled
    earn(world, 200, "d1", 3, month=12)
    s.commit()
    assert lines(settlement.settle(s, "ST-001", *NOV, "bob", NOW)) == lines(november)     # as written
    assert paid_by(world, "late") is None
    december = settlement.settle(s, "ST-001", *DEC, "bob", JAN2)
    s.commit()
    # the late award at its own day's value (0.5 ct), December's at 0.8 ct: one line per value
    assert lines(december) == [("fuel", 300, 500, 150), ("fuel", 200, 800, 160)]
    late, d1, f1 = paid_by(world, "late"), paid_by(world, "d1"), paid_by(world, "f1")
    assert late is not None and d1 is not None and f1 is not None
    assert (late.id, d1.id, f1.id) == (december[0].id, december[1].id, november[0].id)
    january = settlement.settle(s, "ST-001", dt.date(2027, 1, 1), dt.date(2027, 1, 31), "bob",
                                dt.datetime(2027, 2, 1))
    assert lines(january) == [(settlement.NOTHING, 0, 0, 0)]                       # never twice
    total = select(func.sum(LoyaltySettlement.points)).where(LoyaltySettlement.station_id == "ST-001")
    assert s.scalar(total) == 1500                                                          # never lost
    run = s.scalars(select(AuditEntry).where(AuditEntry.action == "settlement.run")
                    .order_by(AuditEntry.id)).all()
    assert ['"late": 1' in e.detail for e in run] == [False, True, False]


def test_reversals_before_and_after_the_award_is_paid(world: World) -> None:
    s = world.s
    values(world)
    earn(world, 100, "a", 5)                       # paid in November, returned in December
    s.commit()
    settlement.settle(s, "ST-001", *NOV, "alice", NOW)
    s.commit()
    settlement.set_value(s, "ST-001", "fuel", dt.date(2026, 1, 1), 600, **OPS)    # corrected since
    earn(world, 40, "b", 20)                       # synced late with its return of November 25...
    points.reverse_earn(s, "b", dt.datetime(2026, 11, 25), "alice")               # ...before it was paid
    earn(world, 70, "c", 10, month=12)
    s.flush()
    points.reverse_earn(s, "c", dt.datetime(2026, 12, 11), "alice")               # both in December
    earn(world, 9, "d", 30, month=12)
    earn(world, 1000, "e", 31, month=12)
    s.flush()
    points.reverse_earn(s, "a", dt.datetime(2026, 12, 2), "alice")
    points.reverse_earn(s, "d", dt.datetime(2027, 1, 1, 8), "alice")              # before December is settled
    s.commit()
    december = settlement.settle(s, "ST-001", *DEC, "bob", JAN2)
    s.commit()
    # a: -100 at the 0.5 ct it was paid at; b, c: paid and taken back here (0); d, e: paid here at 0.6 ct
    assert lines(december) == [("fuel", -100, 500, -50), ("fuel", 40 + 70 - 40 - 70 + 9 + 1000, 600, 605)]
    january = settlement.settle(s, "ST-001", dt.date(2027, 1, 1), dt.date(2027, 1, 31), "bob",
                                dt.datetime(2027, 2, 1))
    assert lines(january) == [("fuel", -9, 600, -6)]                               # -5.4 rounds down
    all_lines = s.scalars(select(LoyaltySettlement)).all()
    assert sum(r.points * r.milli_cents for r in all_lines) == 100 * 500 - 100 * 500 + 1000 * 600
    assert points.check(s) == []


def test_settlements_go_forward_in_station_days(world: World) -> None:
    s = world.s
    values(world)
    station = s.get(Station, "ST-001")
    assert station is not None
    station.timezone = "Europe/Berlin"             # UTC+1 in winter
    points.award(s, world.wallet, 11, key=points.earn_key("eve"), at=dt.datetime(2026, 11, 30, 23, 30),
                 station="ST-001", product_group="fuel", sale_id="eve")      # December 1st, 00:30 there
    earn(world, 5, "nov", 30)
    s.commit()
    with pytest.raises(RewardError, match="not ended"):       # 23:30 UTC on November 30 is December there
        settlement.settle(s, "ST-001", *NOV, "alice", dt.datetime(2026, 11, 30, 22, 59))
    s.rollback()
    assert lines(settlement.settle(s, "ST-001", *NOV, "alice", dt.datetime(2026, 11, 30, 23, 0))) == [
        ("fuel", 5, 500, 2)]
    s.commit()
    with pytest.raises(RewardError, match="settled up to a later day"):
        settlement.settle(s, "ST-001", dt.date(2026, 10, 1), dt.date(2026, 10, 31), "alice", NOW)
    s.rollback()
    assert lines(settlement.settle(s, "ST-001", dt.date(2026, 12, 1), dt.date(2026, 12, 1), "alice", NOW)) \
        == [("fuel", 11, 500, 5)]
    s.commit()
    station.timezone = "Mars/Olympus"
    s.commit()
    with pytest.raises(ConfigError, match="time zone"):
        settlement.settle(s, "ST-001", dt.date(2026, 12, 2), dt.date(2026, 12, 2), "alice", NOW)


# -- the command line ----------------------------------------------------------------------------------------

class Cli:
    """`forecourt registry ...` through forecourtcli.main.main, in this process (a subprocess each costs
    seconds here), on a real SQLite registry; the exit code and both streams as a process gives them."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = f"sqlite:///{tmp_path / 'registry.db'}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["registry", *args, "--db", self.db, "--actor", "operator1"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:           # argparse: a usage error
                code = int(exc.code or 0)
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())

    def ok(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def fails(self, code: int, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode == code, out.stderr
        assert "Traceback" not in out.stderr and out.stderr.startswith("forecourt: ")
        return out.stderr


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[tuple[Cli, Session, Wallet, int]]:
    made = Cli(tmp_path)
    engine, sessions = open_database(made.db)
    with sessions() as s:
        s.add_all([Station(id="ST-001", name="North")])
        account = Account(name="Dana", kind="loyalty", status="active", auth_seq=0)
        s.add(account)
        s.flush()
        wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
        s.add(wallet)
        s.flush()
        points.award(s, wallet, 400, key="earn:f1", at=dt.datetime(2026, 11, 3, 9), station="ST-001",
                     product_group="fuel", sale_id="f1")
        s.commit()
        yield made, s, wallet, account.id
    engine.dispose()


def test_the_command_line_runs_catalogue_orders_conversion_and_settlement(
        cli: tuple[Cli, Session, Wallet, int]) -> None:
    run, s, _, account = cli
    added = run.ok("reward", "add", "--name", "Travel mug", "--points", "150")
    assert added == "reward 1: Travel mug, 150 points\n"
    assert "3 in stock" in run.ok("reward", "stock", "--reward", "1", "--station", "ST-001", "--set", "3")
    taken = run.fails(1, "reward", "stock", "--reward", "1", "--station", "ST-001", "--add", "-4")
    assert "fewer in stock" in taken
    run.fails(2, "reward", "add", "--name", "Mug", "--points", "0")
    assert "ST-001=3" in run.ok("reward", "list")
    order = rewards.redeem(s, account=account, reward=1, station="ST-001", attendant="", handed_over=False,
                           key="o-1", now=dt.datetime(2026, 11, 25, 9))
    s.commit()
    week = run.ok("orders", "week", "--week", "W2026-48")
    assert f"ST-001   1       Travel mug  1         {order.id}" in week
    assert run.ok("orders", "week", "--week", "W2026-48") == week
    assert "listed" in run.ok("orders", "list", "--batch", "W2026-48")
    assert run.ok("orders", "return", "--order", str(order.id)) == f"order {order.id}: returned\n"
    run.ok("conversion", "set", "--band", "100:1.5", "--band", "1000:2")
    assert run.ok("conversion", "list").splitlines()[1:] == ["100          1.500", "1000         2.000"]
    bad = run.run("conversion", "set", "--band", "100:1.5555")           # argparse: usage and one line
    assert bad.returncode == 2 and "cents with up to 3 decimals" in bad.stderr
    assert "Traceback" not in bad.stderr
    run.ok("settlement", "value", "--station", "ST-001", "--group", "fuel", "--from", "2026-01-01",
           "--cents", "0.5")
    assert "ST-001   fuel   2026-01-01  0.500" in run.ok("settlement", "values")
    printed = run.ok("settlement", "run", "--station", "ST-001", "--from", "2026-11-01", "--to", "2026-11-30")
    assert "fuel" in printed and "400" in printed and "2.00" in printed and "by operator1" in printed
    assert run.ok("settlement", "show", "--station", "ST-001", "--from", "2026-11-01",
                  "--to", "2026-11-30") == printed
    run.fails(2, "settlement", "show", "--station", "ST-001", "--from", "2026-10-01", "--to", "2026-10-31")
    s.expire_all()
    actions = set(s.scalars(select(AuditEntry.action).where(AuditEntry.actor == "operator1")))
    assert actions >= {"reward.add", "reward.stock", "reward.week", "reward.return", "conversion.set",
                       "settlement.value", "settlement.run"}


def test_two_runs_at_once_write_one_settlement(world: World) -> None:
    values(world)
    earn(world, 1000, "f1", 2)
    world.s.commit()
    sessions = sessionmaker(bind=world.s.get_bind())
    start = threading.Barrier(2)
    got: list[list[int]] = []

    def run(who: str) -> None:
        with sessions() as mine:
            start.wait()
            got.append([r.id for r in settlement.settle(mine, "ST-001", *NOV, who, NOW)])
            mine.commit()

    threads = [threading.Thread(target=run, args=(who,)) for who in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 2 and got[0] == got[1]
    assert world.s.scalar(select(func.count()).select_from(LoyaltySettlement)) == 1
    assert world.s.scalar(select(func.count()).select_from(AuditEntry)
                          .where(AuditEntry.action == "settlement.run")) == 1


def test_settling_while_sales_sync_and_two_periods_at_once_pays_each_award_once(world: World) -> None:
    """Late November sales sync while November and December are settled at once: whichever order the
    station lock gives them (December first refuses November), after a last settlement every award is
    paid by exactly one line and the lines add up to all the points."""
    values(world)
    earn(world, 1000, "f1", 2)
    earn(world, 10, "d0", 2, month=12)
    world.s.commit()
    sessions = sessionmaker(bind=world.s.get_bind())
    start = threading.Barrier(3)
    refused: list[str] = []

    def run(period: tuple[dt.date, dt.date]) -> None:
        with sessions() as mine:
            start.wait()
            try:
                settlement.settle(mine, "ST-001", *period, "alice", JAN2)
                mine.commit()
            except RewardError as exc:
                refused.append(str(exc))

    def sync() -> None:
        with sessions() as mine:
            wallet = mine.get(Wallet, world.wallet.id)
            assert wallet is not None
            start.wait()
            for n in range(20):
                points.award(mine, wallet, 1 + n, key=points.earn_key(f"late{n}"),
                             at=dt.datetime(2026, 11, 29, 12, n), station="ST-001", product_group="fuel")
                mine.commit()

    threads = [threading.Thread(target=run, args=(NOV,)), threading.Thread(target=run, args=(DEC,)),
               threading.Thread(target=sync)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all("settled up to a later day" in r for r in refused) and len(refused) <= 1
    s = world.s
    s.expire_all()
    settlement.settle(s, "ST-001", dt.date(2027, 1, 1), dt.date(2027, 1, 31), "bob", dt.datetime(2027, 2, 1))
    s.commit()
    unpaid = select(func.count()).select_from(PointAward).where(PointAward.settlement_id.is_(None))
    assert s.scalar(unpaid) == 0
    assert s.scalar(select(func.sum(LoyaltySettlement.points))) == 1000 + 10 + sum(range(1, 21))


# -- the property: every award paid once, at its value, whatever the order of syncs and settlements ----------

P_START = dt.datetime(2026, 9, 1)
P_VALUES = (("fuel", dt.date(2026, 9, 1), 500), ("fuel", dt.date(2026, 10, 15), 800),
            ("*", dt.date(2026, 9, 1), 1250), ("shop", dt.date(2026, 10, 1), 2000))
P_GROUPS = ("fuel", "shop", "carwash")
P_STEP = st.one_of(
    # points, how long ago the sale was (hours: late when it crosses a settled period), group, station
    st.tuples(st.just("earn"), st.integers(1, 500), st.integers(0, 24 * 20), st.integers(0, 2),
              st.sampled_from(["ST-001", "ST-001", "ST-002"])),
    # which earn, how long ago the return was (only while its award is not paid: an offline terminal
    # syncing a sale and its return together; the registry books the others when they come)
    st.tuples(st.just("reverse"), st.integers(0, 10**6), st.integers(0, 24 * 5)),
    st.tuples(st.just("pool"), st.integers(1, 300)),          # a transfer in: not granted by the station
    st.tuples(st.just("advance"), st.integers(1, 24 * 15)),
    st.tuples(st.just("settle"), st.integers(0, 3)),          # days skipped before the period
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    engine, sessions = open_database(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'registry.db'}")
    Base.metadata.create_all(engine)
    yield sessions
    engine.dispose()


def _settle_next(s: Session, periods: list[tuple[dt.date, dt.date]], gap: int, now: dt.datetime) -> None:
    start = periods[-1][1] + dt.timedelta(days=1 + gap) if periods else P_START.date()
    end = now.date() - dt.timedelta(days=1)
    if start <= end:
        settlement.settle(s, "ST-001", start, end, "prop", now)
        periods.append((start, end))


def _p_steps(s: Session, wallet: Wallet, steps: list[tuple[Any, ...]]) -> list[tuple[dt.date, dt.date]]:
    """Run the steps, then a last settlement after everything; the periods settled."""
    now, sales, periods = P_START, list[str](), list[tuple[dt.date, dt.date]]()
    for n, step in enumerate(steps):
        if step[0] == "earn":
            at = max(P_START, now - dt.timedelta(hours=step[2]))
            points.award(s, wallet, step[1], key=points.earn_key(f"s{n}"), at=at, station=step[4],
                         product_group=P_GROUPS[step[3]], sale_id=f"s{n}")
            sales.append(f"s{n}")
        elif step[0] == "reverse" and sales:
            sale = sales.pop(step[1] % len(sales))
            award = s.scalar(select(PointAward).join(Movement, Movement.id == PointAward.movement_id)
                             .where(Movement.key == points.earn_key(sale)))
            assert award is not None
            at = now if award.settlement_id is not None else max(award.earned_at,
                                                                  now - dt.timedelta(hours=step[2]))
            points.reverse_earn(s, sale, at, "prop")
        elif step[0] == "pool":
            points.award(s, wallet, step[1], key=f"pool:{n}", at=now, kind="transfer_in", station="ST-001",
                         product_group="fuel")
        elif step[0] == "advance":
            now += dt.timedelta(hours=step[1])
        elif step[0] == "settle":
            _settle_next(s, periods, step[1], now)
    _settle_next(s, periods, 0, now + dt.timedelta(days=30))
    return periods


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(P_STEP, max_size=30))
def test_every_award_is_paid_once_at_its_value(shared: sessionmaker[Session],
                                               steps: list[tuple[Any, ...]]) -> None:
    with shared() as s:
        s.add_all([Station(id="ST-001", name="North"), Station(id="ST-002", name="South")])
        account = Account(name="Dana", kind="loyalty", status="active", auth_seq=0)
        s.add(account)
        s.flush()
        wallet = Wallet(account_id=account.id, allowed_products="*", unit="points", mode="prepaid")
        s.add(wallet)
        for group, valid_from, value in P_VALUES:
            settlement.set_value(s, "ST-001", group, valid_from, value, actor="prop", now=P_START)
        periods = _p_steps(s, wallet, steps)
        s.expire_all()
        awards = s.execute(select(PointAward, Movement.kind, Movement.key)
                           .join(Movement, Movement.id == PointAward.movement_id)).all()
        paid = {r.id: r for r in s.scalars(select(LoyaltySettlement))}
        expected_points = expected_value = 0
        for award, kind, key in awards:
            if kind != "earn" or award.station_id != "ST-001":
                assert award.settlement_id is None
                continue
            assert award.settlement_id is not None                      # paid, by one line
            line = paid[award.settlement_id]
            due = settlement.value_on(P_VALUES, award.product_group, award.earned_at.date())
            assert (line.product_group, line.milli_cents) == (award.product_group, due)
            reversed_ = s.scalar(select(func.count()).select_from(Movement)
                                 .where(Movement.key == "reversal:" + key))
            net = 0 if reversed_ else award.points
            expected_points += net
            expected_value += net * line.milli_cents
        assert sum(r.points for r in paid.values()) == expected_points
        assert sum(r.points * r.milli_cents for r in paid.values()) == expected_value
        assert all(r.amount_cents == r.points * r.milli_cents // 1000 for r in paid.values())
        for start, end in periods:                                      # asked again: as written
            again = settlement.settle(s, "ST-001", start, end, "other", P_START + dt.timedelta(days=999))
            assert {(r.id, r.points, r.amount_cents) for r in again} == {
                (r.id, r.points, r.amount_cents) for r in paid.values()
                if (r.period_start, r.period_end) == (start, end)}
        assert points.check(s) == []
        s.rollback()
