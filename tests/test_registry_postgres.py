"""registry.service on PostgreSQL through registry.db.open_database: the SQLite behaviour, plus concurrency.

The server is a private cluster on a free loopback port (tests/pg_server.py), started once per module.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg_env
import pytest
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from test_registry_checks import (  # noqa: F401  (the same tests, collected here with the PostgreSQL env)
    check_database_from_before_held_sales_is_upgraded,
    test_different_resend_is_a_conflict_kept_apart_and_raised,
    test_fleet_sale_a_little_over_its_authorization_is_booked_far_over_held,
    test_identical_resend_is_a_duplicate_and_counted_once,
    test_plausible_sales_are_counted,
    test_release_of_a_request_never_received_is_not_held_and_bars_the_request,
    test_sale_dated_9999_does_not_exhaust_a_wallet_in_later_months,
    test_sale_of_nothing_releases_a_hold_whose_answer_was_lost,
    test_untrue_bank_sale_is_held,
    test_untrue_fleet_sale_is_held_and_never_counted,
)
from test_registry_migrations import (
    check_database_made_by_todays_code_keeps_every_row,
    check_fresh_database_reaches_the_models_schema,
    check_older_shapes_reach_the_models_schema,
    differences,
)
from test_registry_service import (
    ACME,
    ACME2,
    NORTHWIND,
    NOW,
    SEED,
    Env,
    forget_migrations,
    make_pre_kind_database,
    make_unversioned_database,
    seed_counts,
)
from test_registry_usage import (
    check_a_batch_answers_as_sales_one_by_one,
    check_a_sale_that_cannot_be_stored_fails_alone,
    check_usage_is_the_sum_of_the_rows,
)

from registry import migrations
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import (
    Account,
    Authorization,
    Base,
    Card,
    Device,
    Movement,
    Nozzle,
    Product,
    Station,
    Transaction,
    Wallet,
)
from registry.seed import apply_seed, load_seed
from registry.service import AUTH_TTL, MAX_PIN_TRIES, record_sale

pytestmark = pytest.mark.system

THREADS = 8


pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> Iterator[Env]:
    engine, sessions = open_database(pg_url)
    Base.metadata.drop_all(engine)           # every test starts from the seed alone
    Base.metadata.create_all(engine)
    keys = load_or_create_keys(tmp_path / "keys" / "registry-keys.json")
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), NOW)
        apply_seed(s, keys, load_seed(SEED), NOW)         # twice: seeding is idempotent
    try:
        yield Env(tmp_path, engine, sessions, keys)
    finally:
        engine.dispose()


def _counts(env: Env) -> dict[str, int]:
    return {model.__name__: env.count(model) for model in
            (Station, Product, Nozzle, Device, Account, Wallet, Card, Transaction)}


def test_runs_on_postgresql(env: Env) -> None:
    assert env.engine.dialect.name == "postgresql"
    assert env.engine.url.host == "127.0.0.1" and env.engine.url.port != 5432


def test_rows_added_after_the_seed_get_new_ids(env: Env) -> None:
    from registry.fleet import admin

    with env.sessions() as s:
        customer = admin.create_customer(s, "After the seed", actor="op", now=NOW)
        account = admin.create_account(s, customer.id, "Later", actor="op", now=NOW)
        wallet = admin.add_wallet(s, account.id, unit="money", actor="op", now=NOW)
        s.commit()
        seeded = {w["id"] for w in load_seed(SEED)["wallets"]}
        assert wallet.id not in seeded and account.id > max(a["id"] for a in load_seed(SEED)["accounts"])


def test_plain_postgresql_url_uses_psycopg3(pg_url: str) -> None:
    engine, _ = open_database(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_database_from_before_sale_kinds_is_upgraded(pg_url: str, tmp_path: Path) -> None:
    old_engine = create_engine(pg_url)
    try:
        old_sale = make_pre_kind_database(old_engine)
    finally:
        old_engine.dispose()
    for _ in range(2):                                    # the second opening finds nothing to do
        engine, sessions = open_database(pg_url)
        try:
            env = Env(tmp_path, engine, sessions, load_or_create_keys(tmp_path / "keys.json"))
            assert env.transaction(old_sale).kind == "fleet"
            doc, ack = env.sale(None, kind="bank")
            assert ack["status"] == "stored" and env.transaction(doc["sale_id"]).kind == "bank"
            kind = next(c for c in inspect(engine).get_columns("transactions") if c["name"] == "kind")
        finally:
            engine.dispose()
    assert (kind["nullable"], getattr(kind["type"], "length", None)) == (False, 32)
    assert "'fleet'" in str(kind["default"])


def test_database_from_before_held_sales_is_upgraded(pg_url: str, tmp_path: Path) -> None:
    check_database_from_before_held_sales_is_upgraded(pg_url, tmp_path)


def test_kind_column_of_the_first_registry_with_kinds_is_lengthened(pg_url: str, tmp_path: Path) -> None:
    """That registry made transactions.kind VARCHAR(8): too short for a program name of up to 32."""
    old_engine = create_engine(pg_url)
    try:
        make_unversioned_database(old_engine)
        with old_engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE transactions ALTER COLUMN kind TYPE VARCHAR(8)")
    finally:
        old_engine.dispose()
    for _ in range(2):                                    # the second opening finds nothing to do
        engine, sessions = open_database(pg_url)
        try:
            kind = next(c for c in inspect(engine).get_columns("transactions") if c["name"] == "kind")
            assert getattr(kind["type"], "length", None) == 32
            env = Env(tmp_path, engine, sessions, load_or_create_keys(tmp_path / "keys.json"))
            doc, ack = env.sale(None, kind="prepaid_gift_card_program_abcdef")
            assert ack["status"] == "stored" and len(env.transaction(doc["sale_id"]).kind) == 32
        finally:
            engine.dispose()


def test_bank_sale_is_stored_without_an_authorization(env: Env) -> None:
    doc, ack = env.sale(None, kind="bank", card_masked="476173******0010")
    assert ack["status"] == "stored"
    tx = env.transaction(doc["sale_id"])
    assert (tx.kind, tx.auth_id, tx.card_id, tx.wallet_id, tx.flags) == ("bank", None, None, None, "")


def test_sale_of_the_longest_program_name_is_stored(env: Env) -> None:
    doc, ack = env.sale(None, kind="z" + "9" * 31)       # PostgreSQL enforces the column's length
    assert ack["status"] == "stored" and env.transaction(doc["sale_id"]).kind == "z" + "9" * 31


def test_fleet_sale_without_auth_id_is_flagged_and_never_billed(env: Env) -> None:
    a = env.auth(ACME)
    doc, ack = env.sale(None, kind="fleet", volume_cl=4_000)
    assert ack["status"] == "stored"
    tx = env.transaction(doc["sale_id"])
    assert (tx.wallet_id, tx.card_id, tx.flags) == (None, None, "unknown_authorization")
    assert env.usage(1) == 15_000
    with env.sessions() as s:
        auth = s.get(Authorization, a["auth_id"])
        assert auth is not None and auth.status == "open"


def test_seed_twice_is_idempotent(env: Env) -> None:
    expected = seed_counts()
    assert _counts(env) == expected
    verifier = env.card(ACME).pin_verifier
    with env.sessions() as s:
        apply_seed(s, env.keys, load_seed(SEED), NOW + dt.timedelta(hours=1))
    assert _counts(env) == expected
    assert env.card(ACME).pin_verifier == verifier
    assert env.usage(2) == 20_000 and env.usage(1) == 0


def test_approve(env: Env) -> None:
    a = env.auth(ACME, pump=1)
    assert (a["approved"], a["reason"], a["allowed_cl"], a["card_masked"]) == (
        True, "approved", 15_000, "707700******0019")
    with env.sessions() as s:
        row = s.get(Authorization, a["auth_id"])
        assert row is not None
        assert (row.status, row.device_id, row.wallet_id) == ("open", "T-0001", 1)
        assert row.created_at == NOW and row.expires_at == NOW + AUTH_TTL      # naive UTC round trip
    assert env.usage(1) == 15_000
    assert env.usage(1, NOW + AUTH_TTL + dt.timedelta(seconds=1)) == 0


def test_wrong_pin_counts_to_blocked(env: Env) -> None:
    for tries in range(1, MAX_PIN_TRIES):
        assert env.auth(ACME, pin="0000")["reason"] == "wrong_pin"
        assert env.card(ACME).pin_tries == tries
    assert env.auth(ACME, pin="0000")["reason"] == "pin_tries_exceeded"
    assert (env.card(ACME).status, env.card(ACME).pin_tries) == ("temp_blocked", MAX_PIN_TRIES)
    assert env.auth(ACME, pin="1234")["reason"] == "card_blocked"
    assert env.count(Authorization) == 0
    assert env.auth(ACME2)["approved"] is True


def test_limit_exhausted(env: Env) -> None:
    a = env.auth(NORTHWIND, pump=1)
    assert (a["approved"], a["reason"], a["allowed_cl"]) == (False, "limit_exhausted", 0)
    assert env.count(Authorization) == 0


def test_sale_stored_once_then_duplicate(env: Env) -> None:
    a = env.auth(ACME)
    doc, ack = env.sale(a["auth_id"], volume_cl=2_500)
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
    assert env.record(doc) == {"sale_id": doc["sale_id"], "status": "duplicate", "reason": ""}
    assert env.count(Transaction, Transaction.sale_id == doc["sale_id"]) == 1
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        auth = s.get(Authorization, a["auth_id"])
        assert tx is not None and auth is not None
        assert tx.finished_at == dt.datetime(2025, 3, 15, 11, 59) and tx.received_at == NOW
        assert (tx.wallet_id, tx.card_id, auth.status) == (1, env.card(ACME).id, "completed")
    assert env.usage(1) == 2_500


def test_sale_at_the_limits_of_the_message_schema(env: Env) -> None:
    """What contracts.messages.SALE admits must fit the columns: PostgreSQL enforces lengths and int4."""
    flags = [f"flag-{i:02d}-" + "x" * 55 for i in range(10)]          # ten 64-character flags
    doc, ack = env.sale(env.auth(ACME)["auth_id"], volume_cl=10**7, amount_cents=10**10, product="p" * 64,
                        flags=flags)
    assert ack["status"] == "stored"
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        assert tx is not None
        assert (tx.amount_cents, tx.product) == (10**10, "p" * 64)
        assert tx.flags.split(",")[:10] == flags


def test_other_constraint_failures_are_raised_not_acknowledged(env: Env) -> None:
    doc, _ = env.sale(env.auth(ACME)["auth_id"])
    broken = {**doc, "sale_id": str(uuid.uuid4()), "station": None}       # NOT NULL, not a duplicate
    with env.sessions() as s, pytest.raises(IntegrityError):
        record_sale(s, broken, NOW)
    assert env.count(Transaction, Transaction.sale_id == broken["sale_id"]) == 0


def _record_at_once(env: Env, doc: dict[str, Any], *, flush_together: bool) -> list[dict[str, Any]]:
    """record_sale of one document from THREADS sessions at once; flush_together: every session has seen
    no row before any inserts (the unique constraint alone decides)."""
    sessions = sessionmaker(env.engine, expire_on_commit=False)
    start = threading.Barrier(THREADS, timeout=30)
    flush = threading.Barrier(THREADS, timeout=30)
    if flush_together:
        @event.listens_for(sessions, "before_flush")
        def _all_checked(session: Session, context: Any, instances: Any) -> None:
            flush.wait()

    acks: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            with sessions() as s:
                acks.append(record_sale(s, doc, NOW))
        except BaseException as exc:        # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert not flush.broken
    return acks


def test_concurrent_duplicate_sale_is_stored_once(env: Env) -> None:
    """Eight sessions record one bank sale_id at once; all pass the duplicate check before any inserts."""
    template, _ = env.sale(None, kind="bank")
    doc = {**template, "sale_id": str(uuid.uuid4())}
    acks = _record_at_once(env, doc, flush_together=True)
    assert sorted(a["status"] for a in acks) == ["duplicate"] * (THREADS - 1) + ["stored"]
    assert env.count(Transaction, Transaction.sale_id == doc["sale_id"]) == 1


def test_concurrent_fleet_sale_is_stored_and_debited_once(env: Env) -> None:
    """Eight sessions record one fleet sale at once: the account's lock lets one settle it, the others find
    it stored; one sale, one debit, its authorization completed."""
    template, _ = env.sale(env.auth(ACME)["auth_id"])
    auth_id = env.auth(ACME)["auth_id"]
    doc = {**template, "sale_id": str(uuid.uuid4()), "auth_id": auth_id}
    acks = _record_at_once(env, doc, flush_together=False)
    assert sorted(a["status"] for a in acks) == ["duplicate"] * (THREADS - 1) + ["stored"]
    assert env.count(Transaction, Transaction.sale_id == doc["sale_id"]) == 1
    assert env.count(Movement, Movement.sale_id == doc["sale_id"]) == 1
    with env.sessions() as s:
        auth = s.get(Authorization, auth_id)
        assert auth is not None and auth.status == "completed"


# -- schema migrations (tests/test_registry_migrations.py) ---------------------------------------------

def test_migrations_bring_a_database_made_by_todays_code_to_head_with_every_row(pg_url: str,
                                                                               tmp_path: Path) -> None:
    check_database_made_by_todays_code_keeps_every_row(pg_url, tmp_path)


def test_migrations_bring_older_shapes_to_the_models_schema(pg_url: str) -> None:
    check_older_shapes_reach_the_models_schema(pg_url)


def test_migrations_make_the_models_schema_in_an_empty_database(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        forget_migrations(engine)
    finally:
        engine.dispose()
    check_fresh_database_reaches_the_models_schema(pg_url)


def test_registry_processes_starting_together_on_an_empty_database_all_open_it(pg_url: str) -> None:
    """A main registry and its ingest workers started at once: one migrates, the others wait for it (an
    advisory lock) instead of racing to create the same tables and stopping with an error."""
    engine = create_engine(pg_url)
    try:
        forget_migrations(engine)
    finally:
        engine.dispose()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait()
        try:
            opened, _ = open_database(pg_url)
            opened.dispose()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a registry process hangs on the others' migration"
    assert errors == []
    check_fresh_database_reaches_the_models_schema(pg_url)


def test_migrations_recognise_the_first_kinds_and_reach_the_models_schema(pg_url: str) -> None:
    """transactions.kind VARCHAR(8) (the first registry with kinds) is stamped at r0002 and lengthened."""
    engine = create_engine(pg_url)
    try:
        make_unversioned_database(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE transactions ALTER COLUMN kind TYPE VARCHAR(8)")
            assert migrations.legacy_revision(conn) == "r0002"
    finally:
        engine.dispose()
    upgraded, _ = open_database(pg_url)
    try:
        assert differences(upgraded) == []
    finally:
        upgraded.dispose()


def test_usage_is_the_sum_of_the_rows(env: Env) -> None:
    check_usage_is_the_sum_of_the_rows(env)


def test_a_batch_answers_as_sales_one_by_one(env: Env) -> None:
    check_a_batch_answers_as_sales_one_by_one(env)


def test_a_sale_that_cannot_be_stored_fails_alone(env: Env) -> None:
    check_a_sale_that_cannot_be_stored_fails_alone(env)
