"""Schema changes go through Alembic (registry.migrations): a fresh database reaches the models' schema, and
one made by earlier code is recognised, stamped at the revision it matches and upgraded with every row.

The check_* functions take a database URL; tests/test_registry_postgres.py runs them on PostgreSQL too.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from test_registry_checks import make_pre_held_database
from test_registry_service import ACME, NOW, SEED, Env, forget_migrations, make_pre_kind_database

from registry import devices, migrations
from registry.configs import ConfigIssuer
from registry.db import database_url, open_database
from registry.fleetops import queue_command
from registry.keys import load_or_create_keys
from registry.models import (
    Base,
    Device,
    DeviceEvent,
    EnrollmentRequest,
    Rollout,
    RolloutDevice,
    SoftwareRelease,
)
from registry.seed import apply_seed, load_seed


def head() -> str | None:
    with create_engine("sqlite://").connect() as conn:
        return ScriptDirectory.from_config(migrations.config(conn)).get_current_head()


def differences(engine: Engine, metadata: MetaData = Base.metadata) -> list[Any]:
    """What autogenerate would write to bring the database to `metadata` (types and server defaults
    compared too): empty when they match."""
    opts = {"compare_type": True, "compare_server_default": True}
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))


def version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def mapped_rows(engine: Engine, metadata: MetaData = Base.metadata) -> dict[str, list[Any]]:
    """Every row of every table of `metadata`, in primary-key order."""
    with engine.connect() as conn:
        return {t.name: list(conn.execute(select(t).order_by(*t.primary_key.columns)))
                for t in metadata.sorted_tables if t.name != "alembic_version"}


def rows(engine: Engine, metadata: MetaData = Base.metadata) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of `metadata` (its columns only), in primary-key order."""
    return {name: [tuple(r) for r in found] for name, found in mapped_rows(engine, metadata).items()}


def check_fresh_database_reaches_the_models_schema(url: str) -> None:
    engine, _ = open_database(url)
    try:
        assert version(engine) == head()
        assert differences(engine) == []
    finally:
        engine.dispose()


# The newest revision of the release before this one: its database is "today's" for the next upgrade.
PREVIOUS = "r0006"


def previous_seed() -> dict[str, Any]:
    """The simulator's seed as the previous release could load it: its stations, pumps and devices, and the
    accounts, wallets (a monthly litre limit each) and cards (on one wallet) of that format only."""
    doc = load_seed(SEED)
    wallets = [w for w in doc.get("wallets", []) if "monthly_limit_litres" in w]
    accounts = {w["account"] for w in wallets}
    return {**{k: doc[k] for k in ("stations", "products", "nozzles", "devices")},
            "accounts": [{"id": a["id"], "name": a["name"]} for a in doc["accounts"] if a["id"] in accounts],
            "wallets": wallets,
            "cards": [c for c in doc["cards"] if "wallet" in c and c["wallet"] in {w["id"] for w in wallets}],
            "usage": [u for u in doc.get("usage", []) if u["wallet"] in {w["id"] for w in wallets}]}


def add_device_operations(s: Session, tmp_path: Path) -> None:
    """Rows in the tables of device identity and operations (r0005): a token, a serial registered ahead,
    a device's shadow, its signed configuration, an event, a command, a release and a rollout."""
    devices.create_token(s, "ST-001", NOW)
    devices.import_expected(s, "SN-9,ST-001,T-0009\n", NOW)
    device = s.get(Device, "T-0001")
    assert device is not None
    device.serial, device.cert_fingerprint, device.cert_expires_at = "SN-1", "ab" * 32, NOW
    device.reported_software_version, device.online, device.backlog = "1.4.2", True, 3
    ConfigIssuer(tmp_path / "config").issue_config(s, device, NOW)
    queue_command(s, "T-0001", "restart", now=NOW, command_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    s.add(DeviceEvent(event_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", device_id="T-0001", at=NOW,
                      received_at=NOW, severity="warning", code="paper_low", detail=""))
    s.add(SoftwareRelease(version="1.5.0", sha256="cd" * 32, size=10, path="/srv/1.5.0.bundle",
                          created_at=NOW))
    s.flush()
    s.add(Rollout(id=1, version="1.5.0", percent=10, failure_threshold=20, status="running", created_at=NOW))
    s.flush()
    s.add(RolloutDevice(rollout_id=1, device_id="T-0001", status="offered", updated_at=NOW))
    s.add(EnrollmentRequest(client="claim-1a2b", request_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
                            device_id="T-0001", csr_pem=None, created_at=NOW, reply_status="accepted",
                            answers=1, prepared_at=NOW, replied_at=NOW))
    device.cert_pem = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    s.commit()


def check_database_made_by_todays_code_keeps_every_row(url: str, tmp_path: Path) -> None:
    """A database at the previous release's revision, with rows made by the code (seed, sales, a conflict,
    a held sale) in every table it had, keeps each of them through the upgrade to the newest."""
    scratch = create_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        Base.metadata.create_all(scratch)
        env = Env(tmp_path, scratch, sessionmaker(scratch, expire_on_commit=False),
                  load_or_create_keys(tmp_path / "keys.json"))
        with env.sessions() as s:
            apply_seed(s, env.keys, previous_seed(), NOW)
        doc, _ = env.sale(env.auth(ACME)["auth_id"])
        env.sale(None, kind="bank")
        assert env.record({**doc, "volume_cl": 1})["reason"] == "conflict"
        env.sale(env.auth(ACME)["auth_id"], volume_cl=99_999)           # held
        with env.sessions() as s:
            add_device_operations(s, tmp_path)
        made = {name: [dict(r._mapping) for r in rs] for name, rs in mapped_rows(scratch).items()}
    finally:
        scratch.dispose()
    engine = create_engine(database_url(url))
    try:
        forget_migrations(engine)
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), PREVIOUS)
            old = MetaData()
            old.reflect(conn)
            for table in Base.metadata.sorted_tables:
                if table.name in old.tables and made[table.name]:
                    keep = old.tables[table.name].columns.keys()
                    conn.execute(old.tables[table.name].insert(),
                                 [{k: v for k, v in r.items() if k in keep} for r in made[table.name]])
        before = rows(engine, old)
        assert all(before[name] for name in old.tables if name != "alembic_version"), before.keys()
    finally:
        engine.dispose()
    for _ in range(2):                                    # the second opening finds nothing to do
        upgraded, _ = open_database(url)
        try:
            assert version(upgraded) == head()
            assert rows(upgraded, old) == before
            assert differences(upgraded) == []
            check_fleet_accounts_keep_their_meaning(upgraded)
        finally:
            upgraded.dispose()


def check_fleet_accounts_keep_their_meaning(engine: Engine) -> None:
    """r0007: each card on its wallet's account; each wallet's monthly litres a monthly volume limit of its
    account; open authorizations hold on their wallet; past sales in their account's usage."""
    with engine.connect() as conn:
        cards = conn.execute(text("SELECT c.account_id, w.account_id FROM cards c "
                                  "JOIN wallets w ON w.id = c.wallet_id")).all()
        assert cards and all(card == wallet for card, wallet in cards)
        limits = dict(conn.execute(text("SELECT scope_id, maximum FROM limits WHERE scope = 'account' "
                                        "AND period = 'month' AND unit = 'volume'")).all())
        monthly = dict(conn.execute(text("SELECT account_id, SUM(monthly_limit_cl) FROM wallets "
                                         "GROUP BY account_id")).all())
        assert limits == monthly
        open_auths = conn.execute(text("SELECT COUNT(*) FROM authorizations WHERE status = 'open'")).scalar()
        assert conn.execute(text("SELECT COUNT(*) FROM holds")).scalar() == open_auths
        sold = conn.execute(text("SELECT account_id, SUM(volume_cl) FROM transactions WHERE held = :f "
                                 "AND account_id IS NOT NULL GROUP BY account_id"), {"f": False}).all()
        lifetime = dict(conn.execute(text("SELECT scope_id, volume_cl FROM usage WHERE scope = 'account' "
                                          "AND period_key = 'L'")).all())
        assert sold and all(lifetime[account] == volume for account, volume in sold)


def check_older_shapes_reach_the_models_schema(url: str) -> None:
    for make, found in ((make_pre_kind_database, "r0001"), (None, "r0002")):
        engine = create_engine(database_url(url))
        try:
            if make is None:
                engine.dispose()
                make_pre_held_database(url)
            else:
                make(engine)
            with engine.connect() as conn:
                assert migrations.legacy_revision(conn) == found
        finally:
            engine.dispose()
        upgraded, _ = open_database(url)
        try:
            assert version(upgraded) == head() and differences(upgraded) == []
        finally:
            upgraded.dispose()


def test_fresh_database_reaches_the_models_schema(tmp_path: Path) -> None:
    check_fresh_database_reaches_the_models_schema(f"sqlite:///{tmp_path / 'new.db'}")


def test_database_made_by_todays_code_keeps_every_row(tmp_path: Path) -> None:
    check_database_made_by_todays_code_keeps_every_row(f"sqlite:///{tmp_path / 'today.db'}", tmp_path)


def test_older_shapes_reach_the_models_schema(tmp_path: Path) -> None:
    check_older_shapes_reach_the_models_schema(f"sqlite:///{tmp_path / 'old.db'}")


def test_a_model_change_without_a_migration_is_seen(tmp_path: Path) -> None:
    """The guard: a column in the models that no revision adds is a difference (and fails the test above)."""
    engine, _ = open_database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        changed = copy.deepcopy(Base.metadata)
        changed.tables["stations"].append_column(Column("opened", Integer))
        assert [d[:2] for d in differences(engine, changed)] == [("add_column", None)]
    finally:
        engine.dispose()


def test_new_revision_ids_follow_the_newest() -> None:
    with create_engine("sqlite://").connect() as conn:
        assert migrations.next_revision(migrations.config(conn)) == f"r{int(str(head())[1:]) + 1:04d}"
