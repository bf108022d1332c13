"""registry.purse.issuer: masters made once, sealed under the KEK (never in clear in the database or a
repr), card and SAM keys derived as the card's own KDF says, rotation and retirement, the CA key; and the
r0011 migration up and down on SQLite (PostgreSQL: tests/test_purse_registry_pg.py)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from alembic import command
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from contracts.errors import ConfigError
from contracts.purse_keys import Purpose, derive_card_key, derive_sam_key
from registry import migrations
from registry.db import open_database
from registry.keys import RegistryKeys
from registry.purse.issuer import CA, IssuerKeys, PurseKeyMissing
from registry.purse_models import IssuerKey

NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
CARD = bytes.fromhex("7077000000000019")
R0011_TABLES = {"purse_issuer_keys", "chip_purses", "chip_wallets", "purse_records", "purse_flags",
                "purse_loads", "purse_sams", "purse_scripts"}


def keys() -> RegistryKeys:
    return RegistryKeys(card_key=os.urandom(32), pin_key=os.urandom(32), kek=os.urandom(32))


@pytest.fixture
def sm(tmp_path: Path) -> sessionmaker[Session]:
    _, made = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    return made


def test_masters_are_made_once_and_stored_sealed(sm: sessionmaker[Session]) -> None:
    kek = keys()
    with sm() as s:
        issuer = IssuerKeys.load(s, kek, now=NOW)
        first = issuer.card_key(CARD, Purpose.RECORD, 1)
        s.commit()
    with sm() as s:
        again = IssuerKeys.load(s, kek, now=NOW)
        assert again.card_key(CARD, Purpose.RECORD, 1) == first
        rows = list(s.scalars(select(IssuerKey)))
    assert sorted(r.purpose for r in rows) == ["admin", "auth", CA, "load", "record", "sam"]
    assert all(r.sealed.startswith("sec1:") for r in rows)
    for purpose in Purpose:           # the master behind each row is nowhere in the stored text
        master = kek.open_secret(next(r.sealed for r in rows if r.purpose == purpose.value.decode()),
                                 f"purse issuer {purpose.value.decode()} v1")
        assert len(master) == 16
        assert all(master.hex() not in r.sealed and master not in r.sealed.encode() for r in rows)
        if purpose is Purpose.SAM:
            assert again.sam_key(CARD, 1) == derive_sam_key(master, CARD, version=1)
        else:
            assert again.card_key(CARD, purpose, 1) == derive_card_key(master, CARD, purpose, version=1)
    assert "sec1" not in repr(again) and "sealed keys" in repr(again)


def test_a_sealed_master_opens_only_under_its_own_label_and_kek(sm: sessionmaker[Session]) -> None:
    kek = keys()
    with sm() as s:
        IssuerKeys.load(s, kek, now=NOW)
        row = s.get(IssuerKey, ("load", 1))
        assert row is not None
        with pytest.raises(ConfigError):
            kek.open_secret(row.sealed, "purse issuer auth v1")
        with pytest.raises(ConfigError):
            keys().open_secret(row.sealed, "purse issuer load v1")
        with pytest.raises(ConfigError):
            IssuerKeys.load(s, keys(), now=NOW).card_key(CARD, Purpose.LOAD, 1)


def test_rotation_keeps_old_versions_until_retired(sm: sessionmaker[Session]) -> None:
    kek = keys()
    with sm() as s:
        issuer = IssuerKeys.load(s, kek, now=NOW)
        v1 = issuer.card_key(CARD, Purpose.RECORD, 1)
        with pytest.raises(ConfigError):
            issuer.retire(s, Purpose.RECORD, 1, now=NOW)          # the only live version
        assert issuer.rotate(s, Purpose.RECORD, now=NOW) == 2
        assert issuer.current_version(Purpose.RECORD) == 2 and issuer.current_version(Purpose.LOAD) == 1
        v2 = issuer.card_key(CARD, Purpose.RECORD, 2)
        assert v1 != v2 and issuer.card_key(CARD, Purpose.RECORD, 1) == v1
        issuer.retire(s, Purpose.RECORD, 1, now=NOW)
        assert issuer.retired(Purpose.RECORD, 1) and not issuer.retired(Purpose.RECORD, 2)
        assert issuer.card_key(CARD, Purpose.RECORD, 1) == v1          # still usable to check
        with pytest.raises(PurseKeyMissing):
            issuer.card_key(CARD, Purpose.RECORD, 3)
        s.commit()
    with sm() as s:
        reloaded = IssuerKeys.load(s, kek, now=NOW)
        assert reloaded.versions(Purpose.RECORD) == [1, 2] and reloaded.retired(Purpose.RECORD, 1)


def test_the_ca_key_signs_and_its_public_key_is_compressed(sm: sessionmaker[Session]) -> None:
    with sm() as s:
        issuer = IssuerKeys.load(s, keys(), now=NOW)
        public = issuer.ca_public_key()
        assert len(public) == 33 and public[0] in (2, 3)
        signature = issuer.ca_private_key().sign(b"certificate", ec.ECDSA(hashes.SHA256()))
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public).verify(
            signature, b"certificate", ec.ECDSA(hashes.SHA256()))
        assert issuer.ca_public_key() == public


def check_r0011_up_and_down(url: str) -> None:
    """Upgrade to head makes the purse tables; downgrade to r0010 drops exactly them; upgrade again."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
        assert R0011_TABLES <= set(inspect(engine).get_table_names())
        with engine.begin() as conn:
            command.downgrade(migrations.config(conn), "r0010")
        assert not R0011_TABLES & set(inspect(engine).get_table_names())
        assert "wallets" in inspect(engine).get_table_names()
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
        assert R0011_TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_r0011_upgrades_and_downgrades_on_sqlite(tmp_path: Path) -> None:
    check_r0011_up_and_down(f"sqlite:///{tmp_path / 'migrate.db'}")
