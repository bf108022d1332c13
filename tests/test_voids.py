"""Voiding a stored sale (registry.voids, `forecourt registry sale void`): its wallet debit, its usage and its
loyalty points are undone once; the sale stays, flagged."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pg_env
import pytest
from sqlalchemy import func, select
from test_registry_service import ACME, NOW, SEED, Env, sqlite_env

from contracts.errors import ConfigError
from registry.db import open_database
from registry.fleet import ledger
from registry.keys import load_or_create_keys
from registry.loyalty import admin, points
from registry.models import AuditEntry, Base, Movement, Transaction, Usage, Wallet
from registry.seed import apply_seed, load_seed
from registry.voids import Voided, void_sale

pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


@pytest.fixture
def member(env: Env) -> int:
    """A loyalty account ACME's card earns on: 1 point per litre of diesel."""
    with env.sessions() as s:
        account = admin.create_account(s, "Acme loyalty", issued_on=NOW.date(), actor="op", now=NOW)
        admin.link_card(s, env.keys, account.id, ACME, actor="op", now=NOW)
        admin.add_rule(s, "diesel", "volume", 1000, actor="op", now=NOW)
        s.commit()
        return account.id


def _state(env: Env, account: int) -> tuple[int, int, int, int]:
    """Wallet 1's balance, its month's usage (cl) by its own limit and by its account's, and the loyalty
    account's points."""
    with env.sessions() as s:
        wallet = s.get(Wallet, 1)
        assert wallet is not None
        month = s.scalar(select(Usage.volume_cl).where(Usage.scope == "account", Usage.scope_id == 1,
                                                       Usage.period_key == f"M{NOW:%Y-%m}")) or 0
        return wallet.balance, env.usage(1), month, points.points_wallet(s, account).balance


def test_a_void_gives_back_the_money_the_usage_and_takes_the_points_once(env: Env, member: int) -> None:
    before = _state(env, member)
    answer = env.auth()
    sale, ack = env.sale(answer["auth_id"], volume_cl=4000)
    assert ack["status"] == "stored"
    balance, used, month, earned = _state(env, member)
    assert (balance, used, month, earned) == (before[0] - 4000, before[1] + 4000, before[2] + 4000,
                                              120)                            # 40 L, first use x3
    with env.sessions() as s:
        done = void_sale(s, sale["sale_id"], actor="op", reason="pump test, fuel returned", now=NOW)
        s.commit()
    assert [m.amount for m in done.money] == [4000] and done.points is not None and done.points.amount == -120
    assert _state(env, member) == before
    with env.sessions() as s:
        again = void_sale(s, sale["sale_id"], actor="op", reason="clicked twice", now=NOW)
        s.commit()
        assert again.again and ledger.check(s) == [] and points.check(s) == []
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale["sale_id"]))
        assert tx is not None and tx.flags.split(",").count("voided") == 1
        voids = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sale.void")
        assert s.scalar(voids) == 1
    assert _state(env, member) == before
    assert env.sale(answer["auth_id"], volume_cl=4000, sale_id=sale["sale_id"])[1]["status"] == "duplicate"


def test_a_void_needs_a_reason_and_a_stored_sale(env: Env) -> None:
    with env.sessions() as s, pytest.raises(ConfigError):
        void_sale(s, "0f8fad5b-d9cb-469f-a165-70867728950e", actor="op", reason="gone", now=NOW)
    sale, _ = env.sale(env.auth()["auth_id"])
    with env.sessions() as s, pytest.raises(ConfigError):
        void_sale(s, sale["sale_id"], actor="op", reason="", now=NOW)


def test_the_command_line_voids_a_sale(env: Env) -> None:
    sale, _ = env.sale(env.auth()["auth_id"], volume_cl=1500)
    cmd = [sys.executable, "-m", "forecourtcli", "registry", "sale", "void", sale["sale_id"], "--db",
           f"sqlite:///{env.path}", "--reason", "customer returned", "--actor", "ops"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "voided (+1500 on wallet 1; no points)" in out
    with env.sessions() as s:
        back = select(Movement.amount).where(Movement.key == f"reversal:sale:{sale['sale_id']}")
        assert s.scalar(back) == 1500


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """The seeded registry on SQLite, or on the module's PostgreSQL (as tests/test_registry_postgres.py's)."""
    if request.param == "sqlite":
        yield from sqlite_env(tmp_path)
        return
    engine, sessions = open_database(pg_env.database_url(request, tmp_path))
    Base.metadata.drop_all(engine)           # every test starts from the seed alone
    Base.metadata.create_all(engine)
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
    try:
        yield Env(tmp_path, engine, sessions, keys)
    finally:
        engine.dispose()


def test_two_voids_of_one_sale_at_once_book_usage_and_audit_once(any_env: Env) -> None:
    env = any_env
    before = _state_money(env)
    sale, _ = env.sale(env.auth()["auth_id"], volume_cl=4000)
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def void(i: int) -> None:
        with env.sessions() as s:
            start.wait()
            try:
                results[i] = void_sale(s, sale["sale_id"], actor=f"op{i}", reason="returned", now=NOW)
                s.commit()
            except Exception as exc:  # noqa: BLE001 -- compared below
                results[i] = exc
    threads = [threading.Thread(target=void, args=(i,)) for i in range(2)]
    for each in threads:
        each.start()
    for each in threads:
        each.join()
    assert all(isinstance(r, Voided) for r in results), results
    assert sorted(r.again for r in results if isinstance(r, Voided)) == [False, True]
    assert _state_money(env) == before                   # the money and the usage came back once
    with env.sessions() as s:
        assert ledger.check(s) == []
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == sale["sale_id"]))
        assert tx is not None and tx.flags.split(",").count("voided") == 1
        voids = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "sale.void")
        assert s.scalar(voids) == 1


def _state_money(env: Env) -> tuple[int, int, int]:
    """Wallet 1's balance and its month's usage (cl) by its own limit and by its account's."""
    with env.sessions() as s:
        wallet = s.get(Wallet, 1)
        assert wallet is not None
        month = s.scalar(select(Usage.volume_cl).where(Usage.scope == "account", Usage.scope_id == 1,
                                                       Usage.period_key == f"M{NOW:%Y-%m}")) or 0
        return wallet.balance, env.usage(1), month
