"""The registry's device PIN keys are stored wrapped under a KEK kept outside the database; its key files
are private; rows from before the KEK are sealed at start; a wrong KEK stops the registry at start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from test_registry_service import ACME, PIN_KEY, Env, sqlite_env

from contracts.errors import ConfigError
from registry.db import open_database
from registry.keys import KEK_PREFIX, load_or_create_keys, seal_device_keys
from registry.models import Device
from registry.server import Registry

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def db_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_seeded_device_key_is_wrapped_not_stored(env: Env) -> None:
    with env.sessions() as s:
        stored = s.scalar(select(Device.pin_key_hex).where(Device.id == "T-0001"))
    assert stored is not None and stored.startswith(KEK_PREFIX)
    assert env.keys.device_key(stored) == PIN_KEY
    env.engine.dispose()
    blob = db_bytes(env.path).lower()
    assert PIN_KEY.hex().encode() not in blob and PIN_KEY not in blob
    assert env.auth(ACME)["reason"] == "approved"                   # PIN checked with the unwrapped key
    assert env.auth(ACME, pin="9999")["reason"] == "wrong_pin"


def test_sealed_key_fits_the_column_for_every_aes_size(env: Env) -> None:
    width = Device.__table__.c.pin_key_hex.type.length         # PostgreSQL enforces VARCHAR(64)
    for size in (16, 24, 32):
        sealed = env.keys.seal_device_key(os.urandom(size))
        assert len(sealed) <= width
    with pytest.raises(ConfigError):
        env.keys.seal_device_key(b"\x00" * 8)


def test_plain_rows_are_sealed_at_start_and_still_verify_pins(env: Env) -> None:
    with env.sessions() as s:                               # a database from before the KEK
        s.execute(update(Device).where(Device.id == "T-0001").values(pin_key_hex=PIN_KEY.hex().upper()))
        s.commit()
    assert env.auth(ACME)["reason"] != "approved"           # an unsealed row is never used as a key
    with env.sessions() as s:
        assert seal_device_keys(s, env.keys) == 1
        assert seal_device_keys(s, env.keys) == 0           # once
        stored = s.scalar(select(Device.pin_key_hex).where(Device.id == "T-0001"))
    assert stored is not None and stored.startswith(KEK_PREFIX)
    assert env.auth(ACME)["reason"] == "approved"


def test_registry_start_seals_an_old_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    state = tmp_path / "state"
    Registry(url, state, "127.0.0.1", 1, SEED).stop()
    engine, sessions = open_database(url)
    with sessions() as s:
        s.execute(update(Device).values(pin_key_hex=PIN_KEY.hex()))
        s.commit()
    engine.dispose()
    reg = Registry(url, state, "127.0.0.1", 1)
    try:
        with reg.sessions() as s:
            rows = s.scalars(select(Device.pin_key_hex)).all()
        assert rows and all(r.startswith(KEK_PREFIX) for r in rows)
    finally:
        reg.stop()
    assert (state / "kek.hex").stat().st_mode & 0o777 == 0o600
    assert (state / "registry-keys.json").stat().st_mode & 0o777 == 0o600


def test_wrong_kek_stops_the_registry_at_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    Registry(url, tmp_path / "state", "127.0.0.1", 1, SEED).stop()
    other = tmp_path / "other.kek"
    with pytest.raises(ConfigError, match="do not unwrap") as err:
        Registry(url, tmp_path / "state", "127.0.0.1", 1, kek=other)
    assert "T-0001" in str(err.value) and PIN_KEY.hex() not in str(err.value).lower()


def test_kek_is_apart_from_the_database_and_private(tmp_path: Path) -> None:
    kek = tmp_path / "hsm-stand-in" / "registry.kek"
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json", kek)
    assert kek.stat().st_mode & 0o777 == 0o600 and len(keys.kek) == 32
    assert load_or_create_keys(tmp_path / "state" / "registry-keys.json", kek) == keys
    assert keys.kek.hex() not in repr(keys)


@pytest.mark.parametrize("name", ["registry-keys.json", "kek.hex"])
def test_readable_registry_key_files_are_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "registry-keys.json"
    load_or_create_keys(path)
    (tmp_path / name).chmod(0o644)
    with pytest.raises(ConfigError, match="other users"):
        load_or_create_keys(path)


def test_damaged_kek_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "registry-keys.json"
    load_or_create_keys(path)
    kek = tmp_path / "kek.hex"
    kek.chmod(0o600)
    kek.write_text("00" * 16)
    with pytest.raises(ConfigError, match="256-bit"):
        load_or_create_keys(path)
    kek.write_text("zz")
    with pytest.raises(ConfigError, match="not hex"):
        load_or_create_keys(path)


def test_tampered_sealed_key_is_refused(env: Env) -> None:
    sealed = env.keys.seal_device_key(PIN_KEY)
    raw = bytearray(sealed.encode())
    raw[-3] = ord("A") if raw[-3] != ord("A") else ord("B")
    with pytest.raises(ConfigError, match="does not unwrap"):
        env.keys.device_key(raw.decode())
    with pytest.raises(ConfigError, match="unsealed"):
        env.keys.device_key(PIN_KEY.hex())


def test_unusable_device_key_declines_without_counting_a_pin_try(env: Env) -> None:
    with env.sessions() as s:
        s.execute(update(Device).where(Device.id == "T-0001").values(pin_key_hex=PIN_KEY.hex()))  # unsealed
        s.commit()
    answer = env.auth(ACME)
    assert not answer["approved"] and answer["reason"] == "do_not_honour"
    assert env.card(ACME).pin_tries == 0 and env.card(ACME).status == "active"


def test_registry_database_files_are_private(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old.write_bytes(b"")
    old.chmod(0o644)                                 # from before: narrowed at open
    for path in (tmp_path / "new.db", old):
        engine, _ = open_database(f"sqlite:///{path}")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT count(*) FROM devices").scalar()
            made = [p for p in tmp_path.iterdir() if p.name.startswith(path.name)]
            assert path.with_name(path.name + "-wal") in made         # WAL: -wal and -shm exist too
            assert {p.name: p.stat().st_mode & 0o777 for p in made} == {p.name: 0o600 for p in made}
        finally:
            engine.dispose()
