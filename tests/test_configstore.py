"""firmware.configstore: the terminal runs only good configurations and keeps the last one across restarts."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_signing import envelope

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError
from contracts.signing import key_id, public_b64, sign_envelope
from drivers.mqtt import MqttLink
from firmware.configstore import (
    CONFIG_FILE,
    KEYS_FILE,
    Accepted,
    ConfigStore,
    Refused,
    load_config_keys,
    write_config_keys,
)
from firmware.hostlink import HostLink
from firmware.sale.journal import Journal
from firmware.station import Station

KEY = Ed25519PrivateKey.generate()
ROGUE = Ed25519PrivateKey.generate()
KID = key_id(KEY.public_key())
NOW = dt.datetime(2026, 12, 1, 12, 0, 0)
TERMINAL = "T-0001"


def body(price: int = 1659) -> dict[str, Any]:
    return {
        "station": "ST-001", "station_name": "Main St", "currency": "EUR",
        "prices": [{"pump": 1, "nozzle": 1, "product": "diesel", "product_name": "Diesel",
                    "price_milli": price}],
        "products": [{"code": "diesel", "name": "Diesel"}],
        "pumps": [{"pump": 1, "nozzles": [{"nozzle": 1, "product": "diesel"}]}],
        "stop_list": [], "offline_limits": {}, "programs": [], "attendants": [], "registry_bundle_key": "",
    }


def signed(version: int, *, price: int = 1659, issued: dt.datetime = NOW, days: int = 30,
           key: Ed25519PrivateKey = KEY, terminal: str = TERMINAL, kid: str = KID) -> bytes:
    doc = envelope(body(price), terminal=terminal, version=version, issued=issued, days=days, key=key,
                   kid=kid)
    return m.encode(doc, d.SIGNED_CONFIG)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    write_config_keys(tmp_path, {KID: public_b64(KEY.public_key())})
    return tmp_path


def store(state: Path, now: dt.datetime = NOW) -> ConfigStore:
    return ConfigStore(state, terminal=TERMINAL, now=now)


def test_accepts_a_good_one_and_keeps_it_on_disk(state: Path) -> None:
    s = store(state)
    assert s.current is None and s.version == 0
    result = s.offer(signed(3), NOW)
    assert isinstance(result, Accepted) and result.version == 3 and s.version == 3
    assert s.current == body()
    assert stat.S_IMODE(os.stat(state / CONFIG_FILE).st_mode) == 0o600
    again = store(state, NOW + dt.timedelta(days=1))
    assert again.version == 3 and again.current == body() and not again.expired(NOW)


@pytest.mark.parametrize(("payload", "reason"), [
    (signed(4, key=ROGUE, kid=KID), "bad_signature"),
    (signed(4, key=ROGUE, kid=key_id(ROGUE.public_key())), "unknown_key"),
    (signed(4, terminal="T-0002"), "wrong_terminal"),
    (signed(4, issued=NOW - dt.timedelta(days=31)), "expired"),
    (signed(4, issued=NOW + dt.timedelta(hours=1)), "not_yet_valid"),
    (signed(3, price=1700), "old_version"),
    (signed(2, price=1700), "old_version"),
    (b"{not json", "malformed"),
    (b'{"v":1,"terminal":"T-0001"}', "malformed"),
])
def test_refusals_keep_the_running_version(state: Path, payload: bytes, reason: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    s = store(state)
    assert isinstance(s.offer(signed(3), NOW), Accepted)
    on_disk = (state / CONFIG_FILE).read_bytes()
    with caplog.at_level(logging.WARNING, logger="firmware.configstore"):
        result = s.offer(payload, NOW)
    assert isinstance(result, Refused) and result.reason == reason
    assert s.version == 3 and s.current == body() and s.refusals[reason] == 1
    assert (state / CONFIG_FILE).read_bytes() == on_disk
    assert any(getattr(r, "reason", None) == reason for r in caplog.records)


def test_the_same_one_again_is_nothing_to_do(state: Path) -> None:
    s = store(state)
    s.offer(signed(3), NOW)
    assert s.offer(signed(3), NOW + dt.timedelta(minutes=1)) is None      # the retained copy, redelivered
    assert not s.refusals
    assert isinstance(s.offer(signed(4, price=1700), NOW), Accepted) and s.current == body(1700)


def test_an_expired_stored_one_still_runs_and_says_so(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    store(state).offer(signed(5, days=1), NOW)
    later = NOW + dt.timedelta(days=3)
    with caplog.at_level(logging.WARNING, logger="firmware.configstore"):
        s = store(state, later)
    assert s.version == 5 and s.current == body() and s.expired(later)
    assert "expired" in caplog.text
    assert isinstance(s.offer(signed(6, issued=later), later), Accepted) and not s.expired(later)


def test_a_stored_one_tampered_with_is_not_run(state: Path) -> None:
    store(state).offer(signed(5), NOW)
    doc = json.loads((state / CONFIG_FILE).read_text())
    doc["body"]["prices"][0]["price_milli"] = 1
    (state / CONFIG_FILE).write_text(json.dumps(doc))
    s = store(state)
    assert s.current is None and s.version == 0 and s.refusals["bad_signature"] == 1


def test_without_keys_everything_is_refused(tmp_path: Path) -> None:
    s = ConfigStore(tmp_path, terminal=TERMINAL, now=NOW)
    result = s.offer(signed(1), NOW)
    assert isinstance(result, Refused) and result.reason == "unknown_key" and s.current is None


def test_keys_file_is_private_and_checked(tmp_path: Path) -> None:
    write_config_keys(tmp_path, {KID: public_b64(KEY.public_key())})
    assert stat.S_IMODE(os.stat(tmp_path / KEYS_FILE).st_mode) == 0o600
    assert list(load_config_keys(tmp_path)) == [KID]
    (tmp_path / KEYS_FILE).write_text(json.dumps({"0000000000000000": public_b64(KEY.public_key())}))
    with pytest.raises(ConfigError, match="damaged"):
        load_config_keys(tmp_path)
    with pytest.raises(ValueError):
        write_config_keys(tmp_path, {"0000000000000000": public_b64(KEY.public_key())})


def test_the_body_run_becomes_the_station(state: Path) -> None:
    doc = body() | {"stop_list": ["707700******0019"], "offline_limits": {"fleet": {"amount_cents": 5000,
                                                                                     "volume_cl": 3000}}}
    raw = m.encode(sign_envelope(doc, terminal=TERMINAL, version=1, issued_at=NOW,
                                 expires_at=NOW + dt.timedelta(days=1), key_id=KID, private_key=KEY),
                   d.SIGNED_CONFIG)
    s = store(state)
    assert isinstance(s.offer(raw, NOW), Accepted)
    station = Station.from_config(s.current, "ST-001")
    assert station.name == "Main St" and station.price(1, 1) == 1659 and station.product(1, 1) == ("diesel",
                                                                                                  "Diesel")
    assert station.blocked(masked="707700******0019") and not station.blocked(masked="707700******0027")
    assert station.offline_limit("fleet") == (5000, 3000) and station.offline_limit("bank") is None


_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=8)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200), field=st.sampled_from(sorted(d.SIGNED_CONFIG) + ["v", "extra"]),
       value=_VALUES)
def test_anything_offered_is_run_or_refused_never_raised(state: Path, raw: bytes, field: str,
                                                         value: Any) -> None:
    s = store(state)
    doc = json.loads(signed(1))
    if field == "body" and isinstance(value, dict):
        doc["body"] = body() | value          # a body field changed: the signature no longer holds
    else:
        doc[field] = value
    for payload in (raw, json.dumps(doc).encode()):
        s.offer(payload, NOW)                 # (the state dir is shared by all examples)
    assert s.current in (None, body()) and s.version in (0, 1)     # only the genuine one ever runs


def test_hostlink_reports_a_refusal_through_its_event_sink(state: Path) -> None:
    """The terminal's HostLink offers what arrives on its config topic to the store beside its journal;
    a refusal becomes a config_refused event (deviceops queues it while offline)."""
    journal = Journal(state / "journal.db")
    try:
        host = HostLink(MqttLink("127.0.0.1", 9, TERMINAL), journal, TERMINAL, "ST-001", pin_key=bytes(16))
        seen: list[tuple[str, str, str]] = []
        host.event_sink = lambda *event: seen.append(event)
        topic = protocol.topic("config", terminal=TERMINAL)
        host._on_config(topic, signed(2, price=1700), None)
        assert host.configs.version == 2 and host.station.price(1, 1) == 1700 and host.config_changed.is_set()
        host._on_config(topic, signed(3, key=ROGUE), None)
        assert seen == [("warning", "config_refused", "reason=bad_signature offered=3 running=2")]
        assert host.configs.version == 2 and host.station.price(1, 1) == 1700
    finally:
        journal.close()


def test_hostlink_reports_an_expired_stored_config_on_connect(state: Path) -> None:
    issued = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(days=2)
    store(state, issued).offer(signed(4, issued=issued, days=1), issued)
    journal = Journal(state / "journal.db")
    try:
        host = HostLink(MqttLink("127.0.0.1", 9, TERMINAL), journal, TERMINAL, "ST-001", pin_key=bytes(16))
        seen: list[tuple[str, str, str]] = []
        host.event_sink = lambda *event: seen.append(event)
        assert host.configs.version == 4 and host.station.price(1, 1) == 1659     # it still runs
        host._on_link(True)
        assert seen == [("warning", "config_expired", "running=4")]
    finally:
        journal.close()
