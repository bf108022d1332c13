"""A wallet's monthly usage is read from indexes (r0004), and always equals the sum recomputed from its rows.

The project's standard "every balance is the sum of its ledger movements": after a mix of sales over several
months (counted, held, duplicate, conflict, release of nothing) wallet_usage_cl gives what the transactions
and open holds add up to. Timings belong in benchmarks/registry_auth_under_flood.py, not here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text
from test_registry_service import ACME, ACME2, NORTHWIND, Env, sqlite_env

from registry.models import Authorization, Transaction

MONTHS = [dt.datetime(2025, 1, 20, 9, 0), dt.datetime(2025, 2, 10, 9, 0), dt.datetime(2025, 3, 15, 12, 0)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def recomputed(env: Env, wallet: int, now: dt.datetime) -> int:
    """The usage summed in Python over every row: counted sales since the month began, plus open holds."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with env.sessions() as s:
        sales = sum(t.volume_cl for t in s.scalars(select(Transaction)).all()
                    if t.wallet_id == wallet and not t.held and t.finished_at >= start)
        holds = sum(a.allowed_cl for a in s.scalars(select(Authorization)).all()
                    if a.wallet_id == wallet and a.status == "open" and a.expires_at > now)
    return sales + holds


def mixed_months(env: Env) -> None:
    """Counted, held, duplicate, conflict and released sales, and open holds, in three months."""
    for i, now in enumerate(MONTHS):
        def sale(auth_id: str | None, volume_cl: int = 2000, now: dt.datetime = now,
                 **over: object) -> dict[str, object]:
            doc, _ = env.sale(auth_id, volume_cl, finished_at=stamp(now - dt.timedelta(minutes=1)), **over)
            return doc

        counted = sale(env.auth(ACME, now=now)["auth_id"], 1000 + i)
        assert env.record(counted, now)["status"] == "duplicate"                          # counted once
        assert env.record({**counted, "volume_cl": 1}, now)["reason"] == "conflict"       # kept apart
        sale(env.auth(ACME2, now=now)["auth_id"], 99_999)                                 # over: held
        sale(env.auth(ACME, now=now)["auth_id"], 0, amount_cents=0)                       # released
        sale(str(uuid.uuid4()), 0, amount_cents=0)                                        # release of nothing
        sale(None, 700, kind="bank")                                                      # no wallet
        env.auth(ACME, now=now)                                                           # an open hold
        env.auth(NORTHWIND, now=now)                                                      # declined: used up


def check_usage_is_the_sum_of_the_rows(env: Env) -> None:
    mixed_months(env)
    for now in [*MONTHS, MONTHS[-1] + dt.timedelta(hours=1), MONTHS[-1] + dt.timedelta(days=40)]:
        for wallet in (1, 2):
            assert env.usage(wallet, now) == recomputed(env, wallet, now), (wallet, now)
    assert env.usage(1, MONTHS[-1]) > 0


def test_usage_is_the_sum_of_the_rows(env: Env) -> None:
    check_usage_is_the_sum_of_the_rows(env)


def test_usage_reads_a_range_of_the_wallet_index_not_the_history(env: Env) -> None:
    """SQLite's plan: both sums search their index by wallet (and date), neither scans a table."""
    mixed_months(env)
    start, now = "2025-03-01 00:00:00", "2025-03-15 12:00:00"
    with env.engine.connect() as conn:
        sales = conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(volume_cl), 0) FROM transactions "
            "WHERE wallet_id = 1 AND held = 0 AND finished_at >= :start"), {"start": start}).all()
        holds = conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(allowed_cl), 0) FROM authorizations "
            "WHERE wallet_id = 1 AND status = 'open' AND expires_at > :now"), {"now": now}).all()
    assert "SEARCH transactions USING INDEX ix_transactions_wallet_usage (wallet_id=? AND finished_at>?)" \
        in [row[-1] for row in sales]
    assert "SEARCH authorizations USING COVERING INDEX ix_authorizations_wallet_hold " \
        "(wallet_id=? AND status=? AND expires_at>?)" in [row[-1] for row in holds]
