"""Chip purses on PostgreSQL (a private server, tests/pg_server.py) and, for comparison, one SQLite file:
two sessions ingesting the same record at once count it once; two authorizations of one load id book it
once; and the r0011 migration upgrades and downgrades on PostgreSQL."""

from __future__ import annotations

import itertools
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from test_purse_ingest import NOW, START, World
from test_purse_issuer import check_r0011_up_and_down

from contracts.purse_records import Kind
from registry.db import open_database
from registry.fleet import ledger
from registry.keys import RegistryKeys
from registry.models import Movement
from registry.purse.loads import authorize_load
from registry.purse.purses import purse_by_id
from registry.purse.records import Item, ingest
from registry.purse.refunds import refunds_for
from registry.purse.scripts import record_advice
from registry.purse_models import PurseLoad, PurseRecord, PurseScript

pytestmark = [pytest.mark.system]

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)
KEYS = RegistryKeys(card_key=os.urandom(32), pin_key=os.urandom(32), kek=os.urandom(32))
IDS = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, made = open_database(pg_env.database_url(request, tmp_path))
    yield made
    engine.dispose()


def world(sessions: sessionmaker[Session]) -> World:
    """A purse of its own in the module's database (the issuer keys are shared: one KEK)."""
    return World(sessions, KEYS, purse_id=struct.pack(">Q", 0x7077_0000_0002_0000 + next(IDS)))


def at_once(sessions: sessionmaker[Session], work: Callable[[Session], Any], n: int = 2) -> list[Any]:
    """Run work(session) in n threads started together, each committing its own session."""
    start, results, errors = threading.Barrier(n), [], []

    def one() -> None:
        start.wait()
        for _ in range(20):
            try:
                with sessions() as s:
                    result = work(s)
                    s.commit()
            except OperationalError:  # SQLite: another writer since this snapshot; the caller retries
                time.sleep(0.05)
                continue
            except Exception as exc:  # the test fails on it below  # noqa: BLE001
                errors.append(exc)
            else:
                results.append(result)
            return

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == n
    return results


def test_two_sessions_ingesting_one_record_count_it_once(sessions: sessionmaker[Session]) -> None:
    w = world(sessions)
    for _ in range(3):
        record = w.card.purchase(0, 321)
        reports = at_once(sessions, lambda s, r=record: ingest(s, w.issuer, [Item(r)], source="mqtt:T-0001",
                                                               now=NOW))
        assert sorted((x.counted, x.duplicate) for x in reports) == [(0, 1), (1, 0)]
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PurseRecord)
                        .where(PurseRecord.purse_id == w.purse_id.hex())) == 3
        assert s.scalar(select(func.count()).select_from(Movement)
                        .where(Movement.key.like(f"purse:{w.purse_id.hex()}:%"))) == 3
        assert ledger.check(s) == []
    assert w.balance(w.chip0) == w.card.balances[0]


def test_two_authorizations_of_one_load_id_book_once(sessions: sessionmaker[Session]) -> None:
    w = world(sessions)
    request = w.card.load_request(0, 1500)
    grants = at_once(sessions, lambda s: authorize_load(s, w.issuer, request, now=NOW))
    assert grants[0] == grants[1] and grants[0].granted
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(PurseLoad)
                        .where(PurseLoad.load_id == request.load_id.hex())) == 1
        assert s.scalar(select(func.count()).select_from(Movement)
                        .where(Movement.key.like(f"purse-load:{request.load_id.hex()}%"))) == 2
        assert ledger.check(s) == []
    assert w.balance(w.chip0) == w.card.balances[0] + 1500


def test_two_advices_and_two_contacts_at_once_make_one_completion_and_one_refund(
        sessions: sessionmaker[Session]) -> None:
    """Security review, issue 18: a refund paid twice by a race (the unique index on purse_scripts, the
    account's lock in record_advice)."""
    w = world(sessions)
    at_once(sessions, lambda s: record_advice(s, w.purse_id, 1, 3200, terminal="T-0001", now=NOW))
    w.ingest(w.card.purchase(0, 5000, kind=Kind.RECOVERED))
    refunds = at_once(sessions, lambda s: refunds_for(s, w.issuer, w.purse_id, 1, now=NOW))
    assert refunds[0] == refunds[1] and [r.amount for r in refunds[0]] == [1800]
    with sessions() as s:
        purse = purse_by_id(s, w.purse_id)
        assert purse is not None
        assert sorted(s.scalars(select(PurseScript.op).where(PurseScript.purse_id == purse.id))) == [
            "complete_pending", "refund"]
        assert ledger.check(s) == []
    assert w.balance(w.chip0) == START[0] - 3200


def test_r0011_upgrades_and_downgrades_on_postgresql(pg_url: str) -> None:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS purse_migrations"))
            conn.execute(text("CREATE DATABASE purse_migrations"))
    finally:
        admin.dispose()
    check_r0011_up_and_down(make_url(pg_url).set(database="purse_migrations").render_as_string(False))
