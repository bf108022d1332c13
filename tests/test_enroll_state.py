"""registry.enroll_state: two registry hosts on one database (SQLite, then a PostgreSQL started for the
module) answer waiting devices together; each owed answer is prepared by one host and sent once."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pg_env
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_enroll import CONFIG_KEYS, Link, request
from test_keyinject import write_bdk
from test_registry_devices import NOW, SEED, UTC_NOW

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from registry import devices
from registry.db import open_database
from registry.enroll import Enroller, handle_enroll
from registry.keyinject import KeyInjector
from registry.keys import load_or_create_keys
from registry.models import Base, Device, EnrollmentRequest
from registry.pki import Authority, fingerprint
from registry.seed import apply_seed, load_seed

DEVICES = [f"T-08{n:02d}" for n in range(8)]


pg_url = pg_env.pg_url          # the module's PostgreSQL (a fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return pg_env.database_url(request, tmp_path)


def test_two_hosts_answer_each_waiting_device_once(url: str, tmp_path: Path) -> None:
    engine, sessions = open_database(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    keys = load_or_create_keys(tmp_path / "state" / "registry-keys.json")
    write_bdk(tmp_path / "state")
    injector = KeyInjector.load(tmp_path / "state")
    authority = Authority.create(tmp_path / "ca", now=UTC_NOW)
    shutil.copytree(authority.directory, tmp_path / "ca-b")
    hosts: list[tuple[Any, Enroller, Link]] = []
    try:
        with sessions() as s:
            apply_seed(s, keys, load_seed(SEED), NOW)
        for device_id in DEVICES:
            with sessions() as s:
                token = devices.create_token(s, "ST-001", NOW, device_id=device_id)
                doc = request(token, f"SN-{device_id}", ec.generate_private_key(ec.SECP256R1()))
                reply = handle_enroll(s, authority, keys, doc, NOW, client=f"claim-{device_id}",
                                      injector=injector, config_keys=CONFIG_KEYS)
                assert reply["status"] == "pending"
                devices.accept(s, device_id)
        for directory in (authority.directory, tmp_path / "ca-b"):     # a process each: its own engine
            host_engine, host_sessions = open_database(url)
            link = Link()
            enroller = Enroller(host_sessions, link, Authority.load(directory), keys, injector,
                                lambda: CONFIG_KEYS, clock=lambda: NOW)
            hosts.append((host_engine, enroller, link))
        start = threading.Barrier(len(hosts))

        def ticks(enroller: Enroller) -> None:
            start.wait()
            for _ in range(3):
                enroller.tick()

        threads = [threading.Thread(target=ticks, args=(e,)) for _, e, _ in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        sent = [(topic, m.decode(payload, d.ENROLL_REPLY))
                for _, _, link in hosts for topic, payload, _ in link.sent]
        assert sorted(topic for topic, _ in sent) == sorted(
            protocol.topic("enroll_reply", client=f"claim-{i}") for i in DEVICES)
        with sessions() as s:
            for _, doc in sent:
                device = s.get(Device, doc["device_id"])
                assert doc["status"] == "accepted" and device is not None
                assert device.cert_pem == doc["certificate_pem"]
                assert device.cert_fingerprint == fingerprint(doc["certificate_pem"])
            rows = s.query(EnrollmentRequest).all()
            assert sorted((r.device_id, r.answers, r.reply_status) for r in rows) == \
                [(i, 1, "accepted") for i in DEVICES]
            assert all(r.replied_at == NOW for r in rows)
    finally:
        for host_engine, _, _ in hosts:
            host_engine.dispose()
        engine.dispose()
