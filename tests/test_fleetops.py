"""registry.fleetops on a seeded SQLite registry: status, heartbeat, events and command results as devices
send them, and commands sent from the database through a real Mosquitto."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError
from drivers.mqtt import MqttLink
from registry.fleetops import FleetOps, handlers, queue_command
from registry.models import Device, DeviceCommand, DeviceEvent
from tests.test_mqtt_sync import Broker, Spy, broker, wait_for  # noqa: F401  (broker: a fixture)
from tests.test_registry_service import Env, sqlite_env

T1, T2, PENDING = "T-0001", "T-0002", "T-0003"
NOW = dt.datetime(2025, 3, 15, 12, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


class Nowhere:
    """A link for handlers that publish nothing (status of a device with no command waiting)."""

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        raise AssertionError(f"nothing should be sent, got {topic}")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    for e in sqlite_env(tmp_path):
        with e.sessions() as s:
            s.add(Device(id=T2, station_id="ST-001", pin_key_hex="00" * 16, status="active"))
            s.add(Device(id=PENDING, station_id="ST-001", pin_key_hex="00" * 16, status="pending"))
            s.commit()
        yield e


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ops(env: Env, clock: Clock) -> FleetOps:
    return FleetOps(env.sessions, Nowhere(), clock=clock)


def _at(when: dt.datetime = NOW) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def status(terminal: str, state: str) -> bytes:
    return m.encode({"terminal": terminal, "state": state}, d.STATUS)


def heartbeat(terminal: str, **over: Any) -> bytes:
    doc = {"terminal": terminal, "at": _at(), "software_version": "1.4.2", "config_version": 7,
           "backlog": 3, "oldest_unsent_s": 125, "uptime_s": 600, "parked": 1} | over
    return m.encode(doc, d.HEARTBEAT)


def event(terminal: str, event_id: str, severity: str = "alarm", code: str = "pump_offline") -> bytes:
    return m.encode({"event_id": event_id, "terminal": terminal, "at": _at(), "severity": severity,
                     "code": code, "detail": "pump 2 does not answer"}, d.EVENT)


def result(terminal: str, command_id: str, state: str = "done", detail: str = "") -> bytes:
    return m.encode({"command_id": command_id, "terminal": terminal, "status": state, "detail": detail,
                     "at": _at()}, d.COMMAND_RESULT)


def topic(name: str, terminal: str) -> str:
    return protocol.topic(name, terminal=terminal)


def device(env: Env, device_id: str) -> Device:
    with env.sessions() as s:
        row = s.get(Device, device_id)
        assert row is not None
        return row


def command(env: Env, command_id: str) -> DeviceCommand:
    with env.sessions() as s:
        row = s.get(DeviceCommand, command_id)
        assert row is not None
        return row


def queue(env: Env, device_id: str = T1, name: str = "heartbeat", ttl: dt.timedelta = dt.timedelta(minutes=5),
          now: dt.datetime = NOW) -> str:
    cid = str(uuid.uuid4())
    with env.sessions() as s:
        queue_command(s, device_id, name, ttl=ttl, now=now, command_id=cid)
    return cid


# -- status and heartbeat --------------------------------------------------------------------------------

def test_status_sets_online_and_last_seen_and_first_seen_only_once(env: Env, ops: FleetOps,
                                                                   clock: Clock) -> None:
    assert device(env, T1).first_seen_at is None
    ops.on_status(topic("status", T1), status(T1, "online"))
    first = device(env, T1)
    assert (first.online, first.first_seen_at, first.last_seen_at) == (True, NOW, NOW)
    clock.now = NOW + dt.timedelta(minutes=10)
    ops.on_status(topic("status", T1), status(T1, "offline"))       # the last will
    later = device(env, T1)
    assert (later.online, later.first_seen_at, later.last_seen_at) == (False, NOW, clock.now)


def test_heartbeat_is_the_reported_state_and_leaves_the_desired_one(env: Env, ops: FleetOps) -> None:
    with env.sessions() as s:
        row = s.get(Device, T1)
        assert row is not None
        row.desired_config_version, row.desired_software_version = 9, "1.5.0"
        s.commit()
    ops.on_heartbeat(topic("heartbeat", T1), heartbeat(T1))
    got = device(env, T1)
    assert (got.reported_software_version, got.reported_config_version, got.backlog,
            got.backlog_oldest_s) == ("1.4.2", 7, 3, 125)
    assert (got.desired_software_version, got.desired_config_version) == ("1.5.0", 9)
    assert got.online and got.last_seen_at == NOW


@pytest.mark.parametrize(("name", "payload", "why"), [
    ("status", status(T2, "online"), "another terminal"),
    ("heartbeat", heartbeat(T2), "another terminal"),
    ("events", event(T2, str(uuid.uuid4())), "another terminal"),
    ("status", b'{"v":1,"terminal":"T-0001","state":"asleep"}', "field=state"),
    ("heartbeat", b"\xff\xfe", "not JSON"),
    ("heartbeat", b"[]", "not a JSON object"),
    ("events", b"x" * 70_000, "too large"),
])
def test_a_message_naming_another_terminal_or_malformed_is_refused_and_changes_nothing(
        env: Env, ops: FleetOps, caplog: pytest.LogCaptureFixture, name: str, payload: bytes,
        why: str) -> None:
    names = ("status", "heartbeat", "events", "command_result")
    handler = {n: h for n, (_, h) in zip(names, ops.handlers(), strict=True)}[name]
    with caplog.at_level(logging.WARNING, logger="registry.fleetops"):
        handler(topic(name, T1), payload, None)
    assert ops.refused == 1
    assert any(why in str(r.__dict__.get("reason")) for r in caplog.records)
    for each in (T1, T2):
        got = device(env, each)
        assert (got.online, got.last_seen_at, got.reported_software_version) == (False, None, None)
    assert env.count(DeviceEvent) == 0


@pytest.mark.parametrize("who", [PENDING, "T-9999"])
def test_a_device_that_is_not_active_is_not_heard(env: Env, ops: FleetOps, who: str) -> None:
    ops.on_status(topic("status", who), status(who, "online"))
    ops.on_heartbeat(topic("heartbeat", who), heartbeat(who))
    ops.on_event(topic("events", who), event(who, str(uuid.uuid4())))
    assert ops.refused == 3
    assert env.count(DeviceEvent) == 0
    if who == PENDING:
        assert device(env, PENDING).last_seen_at is None


def test_handlers_subscribe_every_device_topic_and_status_is_not_shared(env: Env) -> None:
    subs = [sub for sub, _ in handlers(env.sessions, Nowhere(), share=protocol.shared)]
    assert subs == [protocol.subscription("status"), protocol.shared("heartbeat"), protocol.shared("events"),
                    protocol.shared("command_result")]


# -- events ----------------------------------------------------------------------------------------------

def test_an_event_is_stored_once_and_an_alarm_logged_with_its_code(env: Env, ops: FleetOps,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    eid = str(uuid.uuid4())
    with caplog.at_level(logging.INFO, logger="registry.fleetops"):
        for _ in range(3):                               # QoS 1 and the terminal's outbox resend it
            ops.on_event(topic("events", T1), event(T1, eid))
        ops.on_event(topic("events", T1), event(T1, str(uuid.uuid4()), "info", "restarted"))
    with env.sessions() as s:
        rows = s.scalars(select(DeviceEvent).order_by(DeviceEvent.id)).all()
    assert (rows[0].event_id, rows[0].device_id, rows[0].severity) == (eid, T1, "alarm")
    assert [r.code for r in rows] == ["pump_offline", "restarted"]
    alarms = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(alarms) == 1 and alarms[0].__dict__["alarm"] == "pump_offline"
    assert [r.__dict__.get("code") for r in caplog.records if r.levelno == logging.INFO] == ["restarted"]


# -- commands --------------------------------------------------------------------------------------------

def test_a_command_result_is_stored_once(env: Env, ops: FleetOps, clock: Clock) -> None:
    cid = queue(env)
    clock.now = NOW + dt.timedelta(seconds=30)
    ops.on_command_result(topic("command_result", T1), result(T1, cid, "failed", "pump busy"))
    ops.on_command_result(topic("command_result", T1), result(T1, cid, "done"))    # a later copy
    got = command(env, cid)
    assert (got.status, got.detail, got.finished_at) == ("failed", "pump busy", clock.now)


def test_a_result_for_a_command_another_device_was_sent_is_refused(env: Env, ops: FleetOps) -> None:
    cid = queue(env, T2)
    ops.on_command_result(topic("command_result", T1), result(T1, cid))
    ops.on_command_result(topic("command_result", T1), result(T1, str(uuid.uuid4())))
    assert ops.refused == 2 and command(env, cid).status == "pending"


def test_a_result_that_comes_back_before_the_send_is_marked_is_kept(env: Env, clock: Clock) -> None:
    """A fast device answers while publish() still runs: marking the command "sent" afterwards must not
    overwrite its result."""
    ops: list[FleetOps] = []

    class Instant:
        def publish(self, topic_: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                    properties: Any = None) -> None:
            doc = m.decode(payload, d.COMMAND)
            ops[0].on_command_result(topic("command_result", doc["terminal"]),
                                     result(doc["terminal"], doc["command_id"], "done", "ok"))

    ops.append(FleetOps(env.sessions, Instant(), clock=clock))
    with env.sessions() as s:
        row = s.get(Device, T1)
        assert row is not None
        row.online = True
        s.commit()
    cid = queue(env)
    assert ops[0].send_commands() == 1
    got = command(env, cid)
    assert (got.status, got.detail) == ("done", "ok")


@pytest.mark.parametrize(("device_id", "name", "match"), [
    (T1, "format_disk", "command must be one of"),
    ("T-9999", "heartbeat", "no such device"),
    (PENDING, "heartbeat", "is pending, not active"),
])
def test_queueing_a_bad_command_is_a_config_error(env: Env, device_id: str, name: str, match: str) -> None:
    with env.sessions() as s, pytest.raises(ConfigError, match=match):
        queue_command(s, device_id, name, now=NOW, command_id=str(uuid.uuid4()))
    assert env.count(DeviceCommand) == 0


@pytest.mark.system
def test_pending_commands_go_to_connected_devices_and_expired_ones_are_marked(
        env: Env, broker: Broker, clock: Clock) -> None:  # noqa: F811
    spy = Spy(MqttLink("127.0.0.1", broker.port, "spy-" + uuid.uuid4().hex[:8]))
    link = MqttLink("127.0.0.1", broker.port, "registry-ops-" + uuid.uuid4().hex[:8])
    spy.link.start()
    link.start()
    try:
        assert spy.link.wait_connected(5) and link.wait_connected(5)
        for each in (T1, T2):
            spy.watch(topic("commands", each))
        ops = FleetOps(env.sessions, link, clock=clock)
        ops.on_status(topic("status", T2), status(T2, "online"))      # nothing waits for it yet
        online = queue(env, T2, "resend_sales")
        offline = queue(env, T1, "heartbeat")
        stale = queue(env, T2, "restart", ttl=dt.timedelta(seconds=10))
        clock.now = NOW + dt.timedelta(seconds=20)
        assert ops.send_commands() == 1
        assert wait_for(lambda: len(spy.got(topic("commands", T2))) == 1)
        sent = m.decode(spy.got(topic("commands", T2))[0], d.COMMAND)
        assert (sent["command_id"], sent["name"], sent["terminal"]) == (online, "resend_sales", T2)
        assert [command(env, c).status for c in (online, offline, stale)] == ["sent", "pending", "expired"]
        assert ops.send_commands() == 0                       # sent once, unless the device reconnects
        ops.on_status(topic("status", T1), status(T1, "online"))      # T1 comes up: its command goes
        assert wait_for(lambda: len(spy.got(topic("commands", T1))) == 1)
        assert json.loads(spy.got(topic("commands", T1))[0])["command_id"] == offline
        assert spy.got(topic("commands", T2)) == spy.got(topic("commands", T2))[:1]
    finally:
        link.stop()
        spy.link.stop()
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(DeviceCommand)
                        .where(DeviceCommand.status == "expired")) == 1


@pytest.mark.system
def test_the_command_thread_sends_and_expires_by_itself(env: Env, broker: Broker) -> None:  # noqa: F811
    spy = Spy(MqttLink("127.0.0.1", broker.port, "spy-" + uuid.uuid4().hex[:8]))
    link = MqttLink("127.0.0.1", broker.port, "registry-ops-" + uuid.uuid4().hex[:8])
    spy.link.start()
    link.start()
    ops = FleetOps(env.sessions, link)                       # the real clock
    try:
        assert spy.link.wait_connected(5) and link.wait_connected(5)
        spy.watch(topic("commands", T1))
        with env.sessions() as s:
            s.get(Device, T1).online = True  # type: ignore[union-attr]
            s.commit()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cid = queue(env, T1, "heartbeat", now=now)
        gone = queue(env, T2, "heartbeat", ttl=dt.timedelta(seconds=-1), now=now)
        ops.start(every=0.1)
        assert wait_for(lambda: len(spy.got(topic("commands", T1))) == 1)
        assert wait_for(lambda: command(env, gone).status == "expired")
        assert command(env, cid).status == "sent"
    finally:
        ops.stop()
        link.stop()
        spy.link.stop()
    assert ops._thread is not None and not ops._thread.is_alive()
