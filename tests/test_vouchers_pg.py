"""Terminals redeeming one voucher at the same moment ("voucher-twice", issue 15): threads with their own
sessions on one SQLite file and on PostgreSQL (a private server, tests/pg_server.py). Every round exactly
one wins and every other is told "used"; a hypothesis property holds every thread at the UPDATE that
decides until all have read the voucher as issued (the worst interleaving), for any mix of vouchers; a
release racing redemptions hands the voucher to one of them at most."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker
from test_fleet_concurrency_pg import run_threads
from test_vouchers import KEYS, NOW, seed

from registry import vouchers
from registry.db import open_database
from registry.models import AuditEntry, Base, Voucher
from registry.vouchers import VoucherRefused

pytestmark = [pytest.mark.system, pytest.mark.slow]

THREADS = 8
ROUNDS = 25

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


class Registry:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self.engine, self.sessions = engine, sessions

    def issue(self, count: int) -> list[str]:
        with self.sessions() as s:
            made = vouchers.issue(s, KEYS, product="diesel", volume_cl=20_00, count=count, expires_on=None,
                                  now=NOW, actor="op1")
            s.commit()
        return [m.code for m in made]


@pytest.fixture(params=["sqlite", "postgresql"])
def make_registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Registry]]:
    url = pg_env.database_url(request, tmp_path)
    made: list[Engine] = []

    def make() -> Registry:
        while made:
            made.pop().dispose()
        engine, sessions = open_database(url)
        made.append(engine)
        Base.metadata.drop_all(engine)              # every test (and example) starts from its seed alone
        Base.metadata.create_all(engine)
        with sessions() as s:
            seed(s)
        return Registry(engine, sessions)

    yield make
    for engine in made:
        engine.dispose()


def race(reg: Registry, codes: list[str], *, hold_at_update: bool) -> list[tuple[int, str]]:
    """Each thread i redeems codes[i] at its own terminal T<i>; the answers: (i, voucher id or reason).
    hold_at_update: every thread waits just before the deciding UPDATE until all are there."""
    start = threading.Barrier(len(codes), timeout=60)
    at_update = threading.Barrier(len(codes), timeout=60)
    answers: list[tuple[int, str]] = []

    def hold(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE VOUCHERS"):
            at_update.wait()

    if hold_at_update:
        event.listen(reg.engine, "before_cursor_execute", hold)

    def one(i: int) -> None:
        with reg.sessions() as s:
            start.wait()
            try:
                got = vouchers.redeem(s, KEYS, codes[i], terminal=f"T{i}", station="S1", now=NOW)
                answers.append((i, str(got.voucher_id)))
            except VoucherRefused as exc:
                answers.append((i, exc.reason))

    try:
        run_threads(one, len(codes))
    finally:
        if hold_at_update:
            event.remove(reg.engine, "before_cursor_execute", hold)
    return answers


def redeemed_once(reg: Registry) -> None:
    """The database's side: each redeemed voucher has exactly one redemption in the audit."""
    with reg.sessions() as s:
        redeemed = set(s.scalars(select(Voucher.id).where(Voucher.status == "redeemed")))
        per = Counter(s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "voucher.redeem")))
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == vouchers.MISS_ACTION)) == 0
    assert per == Counter({f"voucher:{i}": 1 for i in redeemed})


def test_eight_terminals_typing_one_code_at_once_one_wins_every_round(
        make_registry: Callable[[], Registry]) -> None:
    reg = make_registry()
    codes = reg.issue(ROUNDS)
    for round_, code in enumerate(codes):
        answers = race(reg, [code] * THREADS, hold_at_update=round_ % 2 == 1)
        outcome = Counter(answer for _, answer in answers)
        assert outcome == Counter({str(round_ + 1): 1, "used": THREADS - 1}), (round_, outcome)
    redeemed_once(reg)
    with reg.sessions() as s:
        assert s.scalar(select(func.count()).where(Voucher.status == "redeemed")) == ROUNDS


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, 2), min_size=2, max_size=6), used=st.sets(st.integers(0, 2)))
def test_no_voucher_is_redeemed_twice_at_the_deciding_update(make_registry: Callable[[], Registry],
                                                             picks: list[int], used: set[int]) -> None:
    """Threads pick among three vouchers (some used before the race); all stand at the UPDATE together."""
    reg = make_registry()
    codes = reg.issue(3)
    for i in used:
        with reg.sessions() as s:
            vouchers.redeem(s, KEYS, codes[i], terminal="T-before", station="S1", now=NOW)
    answers = race(reg, [codes[p] for p in picks], hold_at_update=True)
    wins = Counter(answer for _, answer in answers if answer.isdigit())
    for p in set(picks):
        if p in used:
            assert str(p + 1) not in wins
        else:
            assert wins[str(p + 1)] == 1
    assert all(answer == "used" for _, answer in answers if not answer.isdigit())
    redeemed_once(reg)



def release_race(reg: Registry, code: str, voucher_id: int, request: str) -> Counter[str]:
    """Thread 0 releases the voucher its terminal holds while the others type its code."""
    start = threading.Barrier(THREADS, timeout=60)
    answers: list[str] = []

    def one(i: int) -> None:
        with reg.sessions() as s:
            start.wait()
            if i == 0:
                done = vouchers.release(s, voucher_id, terminal="T-holder", request=request, now=NOW)
                answers.append("released" if done else "not released")
                return
            try:
                answers.append(str(vouchers.redeem(s, KEYS, code, terminal=f"T{i}", station="S1",
                                                   now=NOW).voucher_id))
            except VoucherRefused as exc:
                answers.append(exc.reason)

    run_threads(one, THREADS)
    return Counter(answers)


def test_a_release_racing_redemptions_hands_the_voucher_to_one_at_most(
        make_registry: Callable[[], Registry]) -> None:
    """The holder gives the voucher back (its sale dispensed nothing) while seven terminals type its code:
    at most one of them gets it, and only after the release."""
    reg = make_registry()
    codes = reg.issue(ROUNDS // 5)
    for round_, code in enumerate(codes):
        voucher = str(round_ + 1)
        with reg.sessions() as s:
            vouchers.redeem(s, KEYS, code, terminal="T-holder", station="S1", now=NOW, request=f"r{round_}")
        outcome = release_race(reg, code, round_ + 1, f"r{round_}")
        assert outcome["released"] == 1 and outcome[voucher] <= 1, outcome
        assert outcome["used"] == THREADS - 1 - outcome[voucher], outcome
        with reg.sessions() as s:
            row = s.get_one(Voucher, round_ + 1)
            assert (row.status == "redeemed") == (outcome[voucher] == 1)
            assert row.terminal != "T-holder"
