"""firmware.deviceops through a real Mosquitto, with the registry's side (registry.fleetops) on a SQLite
registry: status and last will, heartbeat, the event outbox, remote commands between sales; and the backlog
line of the idle and offline screens in every language."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from contracts import device_messages as d
from contracts import messages as m
from contracts import protocol
from contracts.screens import Screen
from drivers.mqtt import MqttLink
from firmware.deviceops import DONE, RESTART_EXIT, DeviceOps, last_will
from firmware.hostlink import HostLink
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from firmware.terminal.serve import Loop, serve
from registry.fleetops import FleetOps, queue_command
from registry.models import Device, DeviceCommand, DeviceEvent
from registry.server import Registry
from tests.test_mqtt_sync import (  # noqa: F401  (broker: a fixture)
    PIN_KEY,
    SEED,
    STATION,
    TERMINAL,
    Broker,
    Spy,
    broker,
    completed_sale,
    wait_for,
)
from tests.test_registry_service import Env, sqlite_env
from ui.catalog import LANGUAGES
from ui.format import format_number
from ui.views import build

pytestmark = pytest.mark.system


@dataclass
class Side:
    """One terminal's device operations on its own link, and the registry's side on another."""

    link: MqttLink
    journal: Journal
    host: HostLink
    ops: DeviceOps
    stop: threading.Event
    restart: threading.Event
    registry: FleetOps
    registry_link: MqttLink
    env: Env

    def command(self, name: str, ttl: dt.timedelta = dt.timedelta(minutes=5)) -> str:
        cid = str(uuid.uuid4())
        with self.env.sessions() as s:
            queue_command(s, TERMINAL, name, ttl=ttl, now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                          command_id=cid)
        return cid

    def status_of(self, cid: str) -> str:
        with self.env.sessions() as s:
            row = s.get(DeviceCommand, cid)
            assert row is not None
            return row.status

    def device(self) -> Device:
        with self.env.sessions() as s:
            row = s.get(Device, TERMINAL)
            assert row is not None
            return row


def _terminal_link(port: int) -> MqttLink:
    return MqttLink("127.0.0.1", port, f"forecourt-terminal-{TERMINAL}", will=last_will(TERMINAL))


@pytest.fixture
def side(broker: Broker, tmp_path: Path) -> Iterator[Side]:  # noqa: F811
    (tmp_path / "registry").mkdir()
    for env in sqlite_env(tmp_path / "registry"):
        registry_link = MqttLink("127.0.0.1", broker.port, "registry-" + uuid.uuid4().hex[:8])
        registry = FleetOps(env.sessions, registry_link)
        for sub, handler in registry.handlers():
            registry_link.subscribe(sub, handler)
        registry_link.start()
        assert registry_link.wait_connected(5)
        journal = Journal(tmp_path / "terminal" / "journal.db")
        link = _terminal_link(broker.port)
        host = HostLink(link, journal, TERMINAL, STATION, pin_key=PIN_KEY)
        stop, restart = threading.Event(), threading.Event()
        ops = DeviceOps(link, journal, host, TERMINAL, software_version=lambda: "1.4.2",
                        config_version=partial(getattr, host.configs, "version"), stop=stop, restart=restart)
        try:
            yield Side(link, journal, host, ops, stop, restart, registry, registry_link, env)
        finally:
            ops.stop()
            link.stop()
            registry_link.stop()
            journal.close()


def _connect(side: Side) -> None:
    side.link.start()
    assert side.link.wait_connected(5)
    assert wait_for(lambda: side.device().online)


# -- status, last will, heartbeat -----------------------------------------------------------------------

def test_online_on_connect_retained_and_the_last_will_says_offline(side: Side,
                                                                   broker: Broker) -> None:  # noqa: F811
    _connect(side)
    status = protocol.topic("status", terminal=TERMINAL)
    late = Spy(MqttLink("127.0.0.1", broker.port, "late-" + uuid.uuid4().hex[:8]))
    late.link.start()
    try:
        assert late.link.wait_connected(5)
        late.watch(status)                     # subscribed after the fact: the retained status comes
        assert wait_for(lambda: late.got(status) != [])
        assert m.decode(late.got(status)[0], d.STATUS)["state"] == "online"
        # the connection ends without a clean goodbye (MQTT 5 DISCONNECT 0x04): the broker sends the will
        will = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        side.link._client.disconnect(reasoncode=will)
        assert wait_for(lambda: len(late.got(status)) == 2)
        assert m.decode(late.got(status)[1], d.STATUS) == {"terminal": TERMINAL, "state": "offline"}
        assert wait_for(lambda: not side.device().online)
    finally:
        late.link.stop()


def test_heartbeat_on_connect_reports_versions_backlog_and_parked(side: Side) -> None:
    for _ in range(2):
        completed_sale(side.journal, str(uuid.uuid4()))
    parked = completed_sale(side.journal, str(uuid.uuid4()))
    side.journal.park(parked, "malformed")
    _connect(side)
    assert wait_for(lambda: side.device().reported_software_version == "1.4.2")
    got = side.device()
    assert (got.reported_config_version, got.backlog, got.first_seen_at is not None) == (0, 2, True)
    assert 0 <= got.backlog_oldest_s < 60


def test_heartbeat_every_period(side: Side) -> None:
    side.ops.every = 0.2
    _connect(side)
    side.ops.start()
    completed_sale(side.journal, str(uuid.uuid4()))
    assert wait_for(lambda: side.device().backlog == 1, timeout=3)


# -- events ---------------------------------------------------------------------------------------------

def test_events_wait_while_offline_dropped_oldest_beyond_the_outbox_and_sent_on_reconnect(
        side: Side, caplog: pytest.LogCaptureFixture) -> None:
    side.ops.outbox_size = 5
    with caplog.at_level(logging.WARNING, logger="firmware.deviceops"):
        for n in range(7):
            side.ops.event("alarm" if n == 6 else "info", "pump_offline", f"n={n}")
    assert side.ops.pending_events() == 5 and side.ops.dropped == 2
    waiting = [json.loads(p) for p in side.ops._outbox]
    assert [e["detail"] for e in waiting] == [f"n={n}" for n in range(2, 7)]
    assert sum("outbox full" in r.getMessage() for r in caplog.records) == 2
    _connect(side)
    assert wait_for(lambda: side.env.count(DeviceEvent) == 5)
    assert side.ops.pending_events() == 0
    with side.env.sessions() as s:
        stored = [e.event_id for e in s.scalars(select(DeviceEvent).order_by(DeviceEvent.id))]
    assert stored == [e["event_id"] for e in waiting]          # in order, the two oldest dropped


# -- commands -------------------------------------------------------------------------------------------

def _queued(side: Side, n: int) -> bool:
    return side.ops._commands.qsize() == n


def test_a_command_runs_between_sales_once_and_its_result_reaches_the_registry(side: Side) -> None:
    _connect(side)
    open_sale = str(uuid.uuid4())
    side.journal.begin_sale(open_sale, 1, "707700******0019", "a" * 32, program="fleet")
    side.journal.transition(open_sale, SaleState.AUTHORIZING)
    side.journal.transition(open_sale, SaleState.APPROVED)            # a pump may be filling
    cid = side.command("heartbeat")
    side.registry.send_commands()
    assert wait_for(lambda: _queued(side, 1))
    assert side.ops.idle() is False and _queued(side, 1)             # not during a sale
    assert side.status_of(cid) == "sent"
    side.journal.transition(open_sale, SaleState.COMPLETED, volume_cl=0, amount_cents=0)
    assert side.ops.idle() is False and _queued(side, 0)
    assert wait_for(lambda: side.status_of(cid) == "done")
    assert json.loads(side.journal.get_value(DONE + cid) or "{}")["status"] == "done"
    done = side.journal.get_value(DONE + cid)
    # delivered again (the registry resends to a device whose result it never got): not run twice,
    # the result kept in the journal is sent again
    with side.env.sessions() as s:
        row = s.get(DeviceCommand, cid)
        assert row is not None
        row.status, row.detail = "sent", "result lost"      # as if the result never arrived
        s.commit()
    side.registry.send_commands(resend=True)
    assert wait_for(lambda: side.status_of(cid) == "done")
    assert _queued(side, 0) and side.ops.idle() is False and _queued(side, 0)
    assert side.journal.get_value(DONE + cid) == done             # the same result, not a second run
    with side.env.sessions() as s:
        row = s.get(DeviceCommand, cid)
        assert row is not None and row.detail == json.loads(json.loads(done or "{}")["result"])["detail"]


def test_expired_and_unknown_commands_are_rejected(side: Side) -> None:
    _connect(side)
    stale = {"command_id": str(uuid.uuid4()), "terminal": TERMINAL, "name": "heartbeat", "args": {},
             "expires_at": "2020-01-01T00:00:00Z"}
    unknown = {**stale, "command_id": str(uuid.uuid4()), "name": "format_disk",
               "expires_at": "2099-01-01T00:00:00Z"}
    with side.env.sessions() as s:
        for doc in (stale, unknown):
            s.add(DeviceCommand(id=doc["command_id"], device_id=TERMINAL, name=doc["name"], args="{}",
                                created_at=dt.datetime(2020, 1, 1), expires_at=dt.datetime(2099, 1, 1),
                                status="sent", detail=""))
        s.commit()
    for doc in (stale, unknown):               # as a registry would publish them (one newer than this code)
        side.registry_link.publish(protocol.topic("commands", terminal=TERMINAL), m.encode(doc, d.COMMAND))
    for doc, why in ((stale, "expired"), (unknown, "unknown command format_disk")):
        assert wait_for(lambda doc=doc: side.status_of(doc["command_id"]) == "rejected")
        with side.env.sessions() as s:
            got = s.get(DeviceCommand, doc["command_id"])
            assert got is not None and got.detail == why
        assert json.loads(side.journal.get_value(DONE + doc["command_id"]) or "{}")["status"] == "rejected"
    assert _queued(side, 0)


def test_restart_stops_the_terminal_for_its_supervisor(side: Side) -> None:
    _connect(side)
    cid = side.command("restart")
    side.registry.send_commands()
    assert wait_for(lambda: _queued(side, 1))
    assert side.ops.idle() is True
    assert side.stop.is_set() and side.restart.is_set() and RESTART_EXIT == 75
    assert wait_for(lambda: side.status_of(cid) == "done")
    assert wait_for(lambda: side.env.count(DeviceEvent, DeviceEvent.code == "restarting") == 1)


def test_selftest_is_reported_not_available_and_resend_sales_restarts_the_backoff(side: Side,
                                                                                  broker: Broker,  # noqa: F811
                                                                                  ) -> None:
    sales = protocol.topic("sales", terminal=TERMINAL)
    spy = Spy(MqttLink("127.0.0.1", broker.port, "spy-" + uuid.uuid4().hex[:8]))
    spy.link.start()
    assert spy.link.wait_connected(5)
    spy.watch(sales)
    _connect(side)
    side.host.start_sync()
    try:
        completed_sale(side.journal, str(uuid.uuid4()))     # no registry answers: its ack waited 10 s
        side.host.kick()                                    # as the sale machine does on completing a sale
        assert wait_for(lambda: len(spy.got(sales)) == 1)
        selftest, resend = side.command("selftest"), side.command("resend_sales")
        side.registry.send_commands()
        assert wait_for(lambda: _queued(side, 2))
        side.ops.idle()
        assert wait_for(lambda: side.status_of(resend) == "done")
        assert wait_for(lambda: len(spy.got(sales)) == 2, timeout=3)     # sent again now, not in 10 s
        with side.env.sessions() as s:
            row = s.get(DeviceCommand, selftest)
            assert row is not None and row.status == "failed" and "not available" in row.detail
    finally:
        side.host.stop_sync()
        spy.link.stop()


# -- the idle and offline screens ------------------------------------------------------------------------

def test_screen_fields_show_the_backlog_and_the_oldest_age(side: Side) -> None:
    assert side.ops.screen_fields() == {}
    sale = completed_sale(side.journal, str(uuid.uuid4()))
    side.journal._db.execute("UPDATE sales SET finished_at = finished_at - 725 WHERE id = ?", (sale,))
    assert side.ops.screen_fields() == {}                  # read at most every few seconds
    side.ops._screen = (float("-inf"), {})
    assert side.ops.screen_fields() == {"backlog": 1, "oldest_min": 12}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("screen", ["idle", "idle_bank_only", "offline"])
def test_idle_and_offline_screens_show_the_backlog_in_every_language(screen: str, lang: str) -> None:
    shown = build(screen, lang, backlog=3, oldest_min=12).lines
    line = [x for x in shown if format_number(lang, 3) in x and format_number(lang, 12) in x]
    assert len(line) == 1
    assert not [x for x in build(screen, lang).lines if format_number(lang, 12) in x]   # none without


# -- the terminal's loop (firmware.terminal.serve) -------------------------------------------------------

def test_the_loop_shows_the_backlog_offline_and_stops_when_idle_says_so() -> None:
    shown: list[tuple[Screen, dict[str, object]]] = []
    calls: list[int] = []

    def idle() -> bool:                        # a restart becomes due on the third look between sales
        calls.append(1)
        return len(calls) == 3

    station = SimpleNamespace(nozzles=lambda pump: (), price_table=lambda pump: {})
    host = SimpleNamespace(online=False, station=station, config_changed=threading.Event())
    port = SimpleNamespace(show=lambda screen, **fields: shown.append((screen, fields)))
    reader = SimpleNamespace(wait_for_card=lambda timeout: False, disconnect=lambda: None)
    loop = Loop(runner=SimpleNamespace(), port=port, reader=reader, stripes=None, pumps=SimpleNamespace(),
                host=host, pump_numbers=(1,), sells_offline=False, idle=idle,  # type: ignore[arg-type]
                screen_fields=lambda: {"backlog": 2, "oldest_min": 5})
    stop = threading.Event()
    serve(loop, stop, card_wait=0.01)
    assert len(calls) == 3 and not stop.is_set()
    assert shown == [(Screen.OFFLINE, {"backlog": 2, "oldest_min": 5})]     # shown once, unchanged since


def test_the_registry_process_hears_a_terminal_and_sends_it_commands(broker: Broker,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", broker.port,
                   seed=SEED)
    reg.start()
    journal = Journal(tmp_path / "terminal" / "journal.db")
    link = _terminal_link(broker.port)
    host = HostLink(link, journal, TERMINAL, STATION, pin_key=PIN_KEY)
    stop, restart = threading.Event(), threading.Event()
    ops = DeviceOps(link, journal, host, TERMINAL, software_version=lambda: "2.0.1", config_version=lambda: 3,
                    stop=stop, restart=restart)

    def device() -> Device:
        with reg.sessions() as s:
            row = s.get(Device, TERMINAL)
            assert row is not None
            return row

    try:
        assert reg.link.wait_connected(5)
        link.start()
        assert wait_for(lambda: device().reported_software_version == "2.0.1")
        assert device().online and device().reported_config_version == 3
        cid = str(uuid.uuid4())
        with reg.sessions() as s:
            queue_command(s, TERMINAL, "heartbeat", now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                          command_id=cid)
        assert wait_for(lambda: ops._commands.qsize() == 1, timeout=10)     # the registry's command round
        ops.idle()

        def status() -> str:
            with reg.sessions() as s:
                row = s.get(DeviceCommand, cid)
                return row.status if row else ""

        assert wait_for(lambda: status() == "done")
    finally:
        link.stop()
        reg.stop()
        journal.close()


def test_a_command_for_another_terminal_or_malformed_is_dropped(side: Side,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    _connect(side)
    other = {"command_id": str(uuid.uuid4()), "terminal": "T-0002", "name": "restart", "args": {},
             "expires_at": "2099-01-01T00:00:00Z"}
    with caplog.at_level(logging.WARNING, logger="firmware.deviceops"):
        for payload in (m.encode(other, d.COMMAND), b'{"v":1,"command_id":"x"}'):
            side.registry_link.publish(protocol.topic("commands", terminal=TERMINAL), payload)
        assert wait_for(lambda: len([r for r in caplog.records if r.name == "firmware.deviceops"]) == 2)
    assert {r.getMessage() for r in caplog.records if r.name == "firmware.deviceops"} == {
        "command for another terminal dropped", "malformed command dropped"}
    assert _queued(side, 0) and side.journal.get_value(DONE + other["command_id"]) is None
    assert side.ops.idle() is False and not side.restart.is_set()


def test_commands_done_are_forgotten_a_day_past_their_expiry(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    try:
        now = 1_800_000_000.0
        journal.put(DONE + "old", json.dumps({"expires": now - 86400 - 1, "status": "done"}))
        journal.put(DONE + "recent", json.dumps({"expires": now - 3600, "status": "done"}))
        journal.put(DONE + "damaged", "{")
        link = MqttLink("127.0.0.1", 1, "never-started")
        DeviceOps(link, journal, HostLink(link, journal, TERMINAL, STATION, pin_key=PIN_KEY), TERMINAL,
                  software_version=lambda: "1", config_version=lambda: 0, stop=threading.Event(),
                  restart=threading.Event(), clock=lambda: now)
        assert list(journal.values(DONE)) == [DONE + "recent"]
    finally:
        journal.close()


def test_a_full_outbox_drops_warnings_before_alarms(side: Side) -> None:
    """A flood of warnings while the link is down (a flapping pump node) never pushes an alarm out."""
    side.ops.outbox_size = 5
    side.ops.event("alarm", "tamper", "first")
    for n in range(20):
        side.ops.event("warning", "pump_node_restarted", f"n={n}")
    side.ops.event("alarm", "door_open", "last")
    waiting = [json.loads(p) for p in side.ops._outbox]
    assert waiting[0]["code"] == "tamper" and waiting[-1]["code"] == "door_open"
    assert side.ops.pending_events() == 5 and side.ops.dropped == 17
    for n in range(10):
        side.ops.event("alarm", "door_open", f"a={n}")
    assert all(json.loads(p)["severity"] == "alarm" for p in side.ops._outbox)   # alarms alone: oldest go
