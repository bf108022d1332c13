"""registry.configs: the signing key, and each device's signed configuration built from a seeded SQLite."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import device_messages as d
from contracts import messages as m
from contracts.errors import ConfigError
from contracts.signing import SignatureError, trusted_from_b64, verify_envelope
from registry.configs import KEY_FILE, ConfigIssuer, config_keys, load_or_create_signing_key
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import ConfigRelease, Device, Nozzle
from registry.seed import apply_seed, load_seed

SEED = Path(__file__).resolve().parents[1] / "hostsim" / "fixtures" / "seed.toml"
SEED_DOC = load_seed(SEED)
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
DEVICE = "T-0001"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine, sessions = open_database(f"sqlite:///{tmp_path / 'registry.db'}")
    with sessions() as s:
        apply_seed(s, load_or_create_keys(tmp_path / "keys.json"), SEED_DOC, NOW)
        yield s
    engine.dispose()


def test_signing_key_is_private_and_stable(tmp_path: Path) -> None:
    state = tmp_path / "registry"
    keys = config_keys(state)
    assert stat.S_IMODE(os.stat(state / KEY_FILE).st_mode) == 0o600
    assert config_keys(state) == keys and ConfigIssuer(state).config_keys() == keys
    (kid, b64), = keys.items()
    assert len(kid) == 16 and list(trusted_from_b64(keys)) == [kid]
    assert "PRIVATE" not in b64


def test_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_key(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="0600"):
        load_or_create_signing_key(tmp_path)


def test_issued_config_verifies_and_carries_the_station(tmp_path: Path, session: Session) -> None:
    issuer = ConfigIssuer(tmp_path / "registry")
    device = session.get(Device, DEVICE)
    assert device is not None
    doc = issuer.issue_config(session, device, NOW)
    session.commit()
    wire = m.decode(m.encode(doc, d.SIGNED_CONFIG), d.SIGNED_CONFIG)
    body = verify_envelope(wire, trusted_from_b64(issuer.config_keys()), terminal=DEVICE, now=NOW)
    names = {p["code"]: p["name"] for p in SEED_DOC["products"]}
    seeded = {(n["pump"], n["nozzle"]): (n["product"], n["price_milli"]) for n in SEED_DOC["nozzles"]
              if n["station"] == device.station_id}
    assert {(p["pump"], p["nozzle"]): (p["product"], p["price_milli"]) for p in body["prices"]} == seeded
    assert {(p["pump"], n["nozzle"]): n["product"] for p in body["pumps"] for n in p["nozzles"]} == {
        k: v[0] for k, v in seeded.items()}
    assert {p["code"]: p["name"] for p in body["products"]} == {v[0]: names[v[0]] for v in seeded.values()}
    assert body["station"] == device.station_id and body["stop_list"] == [] and body["attendants"] == []
    assert doc["version"] == 1 and doc["expires_at"] == "2026-12-31T12:00:00Z"
    assert device.desired_config_version == 1
    with pytest.raises(SignatureError, match="wrong_terminal"):
        verify_envelope(wire, trusted_from_b64(issuer.config_keys()), terminal="T-0002", now=NOW)


def test_version_grows_only_when_the_body_changes(tmp_path: Path, session: Session) -> None:
    issuer = ConfigIssuer(tmp_path / "registry")
    device = session.get(Device, DEVICE)
    assert device is not None
    first = issuer.issue_config(session, device, NOW)
    session.commit()
    again = issuer.issue_config(session, device, NOW + dt.timedelta(hours=5))
    session.commit()
    assert again == first              # republished as it was: same version, same signature
    nozzle = session.scalars(select(Nozzle).where(Nozzle.station_id == device.station_id)).first()
    assert nozzle is not None
    nozzle.price_milli += 10
    changed = issuer.issue_config(session, device, NOW + dt.timedelta(hours=6))
    session.commit()
    assert changed["version"] == 2 and device.desired_config_version == 2
    assert [r.version for r in session.scalars(select(ConfigRelease).where(
        ConfigRelease.device_id == DEVICE).order_by(ConfigRelease.version))] == [1, 2]


def test_a_release_near_expiry_is_renewed(tmp_path: Path, session: Session) -> None:
    issuer = ConfigIssuer(tmp_path / "registry")
    device = session.get(Device, DEVICE)
    assert device is not None
    first = issuer.issue_config(session, device, NOW)
    session.commit()
    assert issuer.issue_config(session, device, NOW + dt.timedelta(days=19)) == first
    renewed = issuer.issue_config(session, device, NOW + dt.timedelta(days=21))
    session.commit()
    assert renewed["version"] == 2 and renewed["body"] == first["body"]
    assert renewed["expires_at"] == "2027-01-21T12:00:00Z"


def test_a_new_signing_key_reissues(tmp_path: Path, session: Session) -> None:
    device = session.get(Device, DEVICE)
    assert device is not None
    first = ConfigIssuer(tmp_path / "old").issue_config(session, device, NOW)
    session.commit()
    second = ConfigIssuer(tmp_path / "new").issue_config(session, device, NOW)
    session.commit()
    assert second["version"] == 2 and second["key_id"] != first["key_id"]
    assert json.loads(session.scalars(select(ConfigRelease.envelope).where(
        ConfigRelease.version == 2)).one()) == second
