"""Several registry processes on the shared sales subscription (MQTT 5.0, 4.8.2) through a real mosquitto:
the sales are shared between them, each stored once and acknowledged, also when a worker dies."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from test_mqtt_sync import SEED, wait_for
from test_registry_usage import mosquitto  # noqa: F401 - the fixture

from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError
from hostsim.services import Process, forecourt_command
from registry.models import Device, Transaction
from registry.server import Registry, utcnow

pytestmark = pytest.mark.system

TERMINALS = [f"T-{i:04d}" for i in range(1, 6)]


def sale(terminal: str) -> tuple[str, bytes]:
    sale_id = str(uuid.uuid4())
    return sale_id, m.encode({
        "sale_id": sale_id, "kind": "bank", "auth_id": None, "terminal": terminal, "station": "ST-001",
        "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 2000, "amount_cents": 3318,
        "price_milli": 1659, "card_masked": "476173******0010",
        "finished_at": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "recovered": False, "flags": []}, m.SALE)


class Terminals:
    """Publishers of sales for TERMINALS, each reading its inbox: the acks received per sale_id."""

    def __init__(self, port: int) -> None:
        self.acks: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="terminals", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_ack
        self.client.connect("127.0.0.1", port)
        for terminal in TERMINALS:
            self.client.subscribe(protocol.topic("terminal_inbox", terminal=terminal), qos=1)
        self.client.loop_start()

    def _on_ack(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ack = m.decode(msg.payload, m.SALE_ACK)
        with self._lock:
            self.acks.setdefault(ack["sale_id"], []).append(ack["status"])

    def send(self, sales: dict[str, tuple[str, bytes]]) -> None:
        for terminal, payload in sales.values():
            self.client.publish(protocol.topic("sales", terminal=terminal), payload, qos=1)

    def acked(self, sale_ids: set[str]) -> set[str]:
        with self._lock:
            return {s for s in sale_ids if s in self.acks}

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def make_sales(count: int) -> dict[str, tuple[str, bytes]]:
    sales = {}
    for n in range(count):
        terminal = TERMINALS[n % len(TERMINALS)]
        sale_id, payload = sale(terminal)
        sales[sale_id] = (terminal, payload)
    return sales


def stored(reg: Registry, sale_ids: set[str]) -> tuple[int, int]:
    """Rows of these sales, and distinct sale ids among them."""
    with reg.sessions() as s:
        rows = s.scalars(select(Transaction.sale_id).where(Transaction.sale_id.in_(sale_ids))).all()
        return len(rows), len(set(rows))


@pytest.fixture
def main_registry(mosquitto: int, tmp_path: Path) -> Iterator[Registry]:  # noqa: F811
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", mosquitto,
                   seed=SEED)
    with reg.sessions() as s:
        model = s.get(Device, "T-0001")
        assert model is not None
        for terminal in TERMINALS[1:]:
            s.merge(Device(id=terminal, station_id="ST-001", pin_key_hex=model.pin_key_hex, status="active"))
        s.commit()
    reg.start()
    try:
        assert reg.link.wait_connected(5)
        yield reg
    finally:
        reg.stop()


def test_two_workers_share_the_sales_each_stored_once_and_acked_once(
        main_registry: Registry, mosquitto: int, tmp_path: Path) -> None:  # noqa: F811
    worker = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", mosquitto,
                      ingest_only=True, worker="w2")
    worker.start()
    terminals = Terminals(mosquitto)
    try:
        assert worker.link.wait_connected(5)
        time.sleep(0.5)                                                 # both subscribed
        sales = make_sales(400)
        terminals.send(sales)
        assert wait_for(lambda: len(terminals.acked(set(sales))) == 400, 30), len(terminals.acked(set(sales)))
        time.sleep(0.3)                                                 # an ack twice would be here now
        assert stored(main_registry, set(sales)) == (400, 400)
        assert all(terminals.acks[s] == ["stored"] for s in sales)     # each answered once
        shares = (main_registry.ingest.acked, worker.ingest.acked)
        assert sum(shares) == 400 and min(shares) > 0, shares          # both took sales
        # every ack lost: the terminals send all again, to whichever worker; none is stored twice
        terminals.send(sales)
        assert wait_for(lambda: all(len(terminals.acks[s]) == 2 for s in sales), 30)
        assert {terminals.acks[s][1] for s in sales} == {"duplicate"}
        assert stored(main_registry, set(sales)) == (400, 400)
        assert main_registry.ingest.acked + worker.ingest.acked == 800
    finally:
        terminals.stop()
        worker.stop()


def test_a_killed_worker_leaves_no_sale_behind(
        main_registry: Registry, mosquitto: int, tmp_path: Path) -> None:  # noqa: F811
    """A worker killed while it holds sales unacknowledged: the broker gives everything after to the live
    one (the worker has no session), and the terminals' resends of the unacknowledged are stored once."""
    db, broker = f"sqlite:///{tmp_path / 'registry.db'}", f"127.0.0.1:{mosquitto}"
    worker = Process("worker", forecourt_command(
        "registry", "run", "--db", db, "--mqtt", broker, "--state-dir", str(tmp_path / "registry"),
        "--ingest-only", "--worker", "w2"), tmp_path / "worker.log")
    terminals = Terminals(mosquitto)
    try:
        time.sleep(2.5)                                                 # the worker subscribed
        worker.kill(signal.SIGSTOP)                     # the broker's sends to it wait, unacknowledged
        first = make_sales(300)
        terminals.send(first)
        assert wait_for(lambda: len(terminals.acked(set(first))) >= 100, 10)   # the main one's share
        worker.kill(signal.SIGKILL)
        time.sleep(0.2)                                                 # the broker saw it go
        later = make_sales(100)
        terminals.send(later)
        sales, resent = first | later, set()
        for _ in range(20):                                             # the terminals' store-and-forward
            if wait_for(lambda: len(terminals.acked(set(sales))) == len(sales), 1.5):
                break
            missing = set(sales) - terminals.acked(set(sales))
            resent |= missing
            terminals.send({s: sales[s] for s in missing})
        assert terminals.acked(set(sales)) == set(sales)
        assert stored(main_registry, set(sales)) == (400, 400)
        assert all(terminals.acks[s][0] in ("stored", "duplicate") for s in sales)
        assert len(resent) >= 100 and resent <= set(first)             # the dead worker's share, once
        assert all(terminals.acks[s] == ["stored"] for s in later)     # none went to the dead worker
    finally:
        terminals.stop()
        worker.stop()


@pytest.mark.parametrize("worker, ingest_only", [("", True), ("two words", False), ("x" * 33, True)])
def test_a_worker_needs_a_name_of_its_own(tmp_path: Path, worker: str, ingest_only: bool) -> None:
    with pytest.raises(ConfigError, match="--worker"):
        Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path, "127.0.0.1", 1, worker=worker,
                 ingest_only=ingest_only)
