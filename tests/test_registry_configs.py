"""registry.configs: the signing key, and each device's signed configuration built from a seeded SQLite."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import device_messages as d
from contracts import loyalty, protocol
from contracts import messages as m
from contracts.errors import ConfigError, HostUnavailable
from contracts.signing import SignatureError, trusted_from_b64, verify_envelope
from drivers.mqtt import MqttLink
from hostsim.services import ServiceError, free_port, start_mosquitto
from registry.configs import (
    KEY_FILE,
    ConfigIssuer,
    build_body,
    config_keys,
    load_or_create_signing_key,
    programs_signature,
)
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.loyalty import admin
from registry.models import ConfigRelease, Device, Nozzle
from registry.seed import apply_seed, load_seed
from registry.server import Registry, utcnow

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


# -- the registry publishes them (a real mosquitto) ---------------------------------------------------------

@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    try:
        proc = start_mosquitto(tmp_path, port := free_port())
    except ServiceError as exc:
        pytest.skip(str(exc))
    try:
        yield port
    finally:
        proc.stop()


@pytest.mark.system
def test_registry_publishes_signed_configs_to_active_devices(tmp_path: Path, broker_port: int) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", broker_port,
                   seed=SEED)
    with reg.sessions() as s:
        s.add(Device(id="T-0009", station_id="ST-001", pin_key_hex=reg.keys.seal_device_key(bytes(16)),
                     status="revoked"))
        s.commit()
    got: dict[str, list[bytes]] = {"T-0001": [], "T-0009": []}
    spy = MqttLink("127.0.0.1", broker_port, "spy")
    for tid, seen in got.items():
        def keep(topic: str, payload: bytes, props: object, seen: list[bytes] = seen) -> None:
            seen.append(payload)
        spy.subscribe(protocol.topic("config", terminal=tid), keep)
    spy.start()
    reg.start()
    trusted = trusted_from_b64(config_keys(tmp_path / "registry"))
    try:
        assert spy.wait_connected(5) and reg.link.wait_connected(5)
        assert wait_for(lambda: len(got["T-0001"]) == 1)
        first = m.decode(got["T-0001"][0], d.SIGNED_CONFIG)
        assert first["version"] == 1
        assert verify_envelope(first, trusted, terminal=DEVICE, now=utcnow())["station"] == "ST-001"
        with reg.sessions() as s:
            nozzle = s.scalars(select(Nozzle).where(Nozzle.station_id == "ST-001")).first()
            assert nozzle is not None
            nozzle.price_milli += 10
            s.commit()
        reg.publish_configs()
        assert wait_for(lambda: len(got["T-0001"]) == 2)
        assert m.decode(got["T-0001"][1], d.SIGNED_CONFIG)["version"] == 2
        with reg.sessions() as s:
            device = s.get(Device, DEVICE)
            assert device is not None and device.desired_config_version == 2
        assert got["T-0009"] == []             # a revoked device is sent nothing
    finally:
        reg.stop()
        spy.stop()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Recorder:
    """The registry's link, as the round sees it: what it published, or the broker away."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: object = None) -> None:
        if self.down:
            raise HostUnavailable("not connected to the broker")
        self.sent.append(topic)


class RacedIssuer(ConfigIssuer):
    """The real issuer, with another registry host storing the same version for T-0001 at the same moment
    (the (device, version) unique constraint fails at commit)."""

    def issue_config(self, s: Session, device: Device, now: dt.datetime) -> dict[str, Any]:
        doc = super().issue_config(s, device, now)
        if device.id == DEVICE:
            s.add(ConfigRelease(device_id=device.id, version=doc["version"], digest="0" * 64,
                                issued_at=now, expires_at=now, envelope="{}"))
        return doc


def test_a_database_error_for_one_device_skips_it_alone(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", free_port(),
                   seed=SEED)
    with reg.sessions() as s:
        s.add(Device(id="T-0002", station_id="ST-001", pin_key_hex=reg.keys.seal_device_key(bytes(16)),
                     status="active"))
        s.commit()
    link = Recorder()
    reg.link = link                                            # type: ignore[assignment]
    issuer = reg.config_issuer
    reg.config_issuer = RacedIssuer(tmp_path / "registry")
    reg.publish_configs()
    assert link.sent == [protocol.topic("config", terminal="T-0002")]
    reg.config_issuer = issuer                                 # the race is over: the next round sends both
    reg.publish_configs()
    assert link.sent[1:] == [protocol.topic("config", terminal=t) for t in (DEVICE, "T-0002")]
    link.down = True
    with pytest.raises(HostUnavailable):                       # the broker away ends the round
        reg.publish_configs()


def test_the_loyalty_programme_rides_in_the_configuration_and_its_changes_are_seen(
        tmp_path: Path, session: Session) -> None:
    device = session.get(Device, DEVICE)
    assert device is not None
    body = build_body(session, device, now=NOW)
    assert body["programs"] == []                                         # no rules: no programme
    assert body["timezone"] == "UTC" and body["product_groups"] == {"diesel": "fuel", "petrol95": "fuel",
                                                                    "adblue": "adblue"}
    assert body["product_codes3"] == {"diesel": "019", "petrol95": "001", "adblue": "062"}
    before = programs_signature(session)
    admin.add_rule(session, "diesel", "volume", 1000, actor="op", now=NOW)
    admin.add_promotion(session, "double diesel", position=1, product="diesel", starts_on=NOW.date(),
                        ends_on=NOW.date() + dt.timedelta(days=30), multiplier_pct=200, actor="op", now=NOW)
    session.commit()
    assert programs_signature(session) != before                          # the publish loop republishes
    [entry] = build_body(session, device, now=NOW)["programs"]
    assert entry["name"] == "loyalty" and entry["enabled"] == 1
    programme = loyalty.programme_from_doc(entry["settings"])
    facts = loyalty.SaleFacts(product="diesel", group="fuel", station=device.station_id, volume_cl=4050,
                              amount_cents=6719, day=NOW.date())
    assert loyalty.earn(programme, facts, tier="base", first_use=False).points == 81    # 40.5 L x1 x2
