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

import pg_env
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from forecourtcli.main import main
from registry.db import open_database
from registry.loyalty import points, rewards, settlement
from registry.loyalty.rewards import RewardError
from registry.models import Account, AuditEntry, Base, LoyaltySettlement, Station, Wallet

NOW = dt.datetime(2026, 12, 2, 10, 0)
NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
OPS = {"actor": "alice", "now": NOW}

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
    # fuel 493 points x 0.5 ct = 246.5 -> 246; shop 7 x 1.25 + 10 x 2 = 28.75 -> 28 (two values)
    assert lines(rows) == [("fuel", 493, 500, 246), ("shop", 17, settlement.MIXED, 28)]
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
