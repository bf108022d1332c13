"""Voiding a stored sale (registry.voids, `forecourt registry sale void`): its wallet debit, its usage and its
loyalty points are undone once; the sale stays, flagged."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from test_registry_service import ACME, NOW, Env, sqlite_env

from contracts.errors import ConfigError
from registry.fleet import ledger
from registry.loyalty import admin, points
from registry.models import AuditEntry, Movement, Transaction, Usage, Wallet
from registry.voids import void_sale


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
