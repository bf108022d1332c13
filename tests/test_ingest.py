"""Sales intake speed (issue 13): a batch reads each table once and inserts in one statement; acks and
requests are not held by Nagle's algorithm."""

from __future__ import annotations

import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from test_mqtt_sync import SEED
from test_registry_service import NOW, Env, sqlite_env
from test_registry_usage import mosquitto  # noqa: F401 - the fixture

from contracts import messages as m
from drivers.mqtt import MqttLink
from hostsim.services import free_port, start_mosquitto
from registry.ingest import SaleIngest
from registry.models import AuditEntry, Device, Transaction, Wallet
from registry.server import Registry
from registry.service import FLAG_REFUSED, REGISTRY_FLAGS, record_sales, terminal_flags
from registry.voids import VOIDED, void_sale


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def sale(kind: str = "bank", auth_id: str | None = None, terminal: str = "T-0001") -> dict[str, Any]:
    return m.decode(m.encode({
        "sale_id": str(uuid.uuid4()), "kind": kind, "auth_id": auth_id, "terminal": terminal,
        "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 2000,
        "amount_cents": 3318, "price_milli": 1659, "card_masked": "476173******0010",
        "finished_at": "2025-03-15T11:59:00.000000Z", "recovered": False, "flags": []}, m.SALE), m.SALE)


def statements(env: Env, sales: list[dict[str, Any]]) -> tuple[list[dict[str, Any] | None], int]:
    """record_sales' answers, and how many SQL statements it sent."""
    sent: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        sent.append(statement)

    event.listen(env.engine, "before_cursor_execute", count)
    try:
        with env.sessions() as s:
            acks = record_sales(s, sales, NOW)
    finally:
        event.remove(env.engine, "before_cursor_execute", count)
    return acks, len(sent)


def test_a_batch_reads_each_table_once_whatever_its_size(env: Env) -> None:
    """Before: three queries and one INSERT per sale (the existence check flushed the previous row)."""
    small_acks, small_count = statements(env, [sale() for _ in range(5)])
    large_acks, large_count = statements(env, [sale() for _ in range(50)])
    assert [a["status"] if a else None for a in small_acks + large_acks] == ["stored"] * 55
    assert large_count == small_count <= 5, (small_count, large_count)
    # a fleet sale completes its authorization and settles its account (registry.fleet.settle: the account
    # lock, its holds, the debit, the usage of five periods for the card and the account): a bounded
    # number of statements per fleet sale, never a read of the account's history
    fleet_acks, fleet_count = statements(env, [sale("fleet", env.auth()["auth_id"]) for _ in range(3)])
    assert [(a["status"], a["reason"]) if a else None for a in fleet_acks] == [("stored", "")] * 3
    assert fleet_count <= small_count + 1 + 3 * 30, fleet_count


def test_one_sale_twice_in_a_batch_is_stored_once(env: Env) -> None:
    """A resend can reach the queue before the first copy is stored: one row, the second a duplicate."""
    first = sale()
    acks, _ = statements(env, [first, sale(), dict(first)])
    assert [a["status"] if a else None for a in acks] == ["stored", "stored", "duplicate"]
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transaction)
                        .where(Transaction.sale_id == first["sale_id"])) == 1


def test_a_reply_sent_after_a_puback_is_not_held_by_nagle(mosquitto: int) -> None:  # noqa: F811
    """The answerer acks a request (PUBACK) and publishes its answer right after: without TCP_NODELAY the
    answer waited for the broker's delayed TCP ACK, ~40 ms each time (a window of 20 sales: ~400/s)."""
    asker = MqttLink("127.0.0.1", mosquitto, "asker")
    answerer = MqttLink("127.0.0.1", mosquitto, "answerer")
    answerer.subscribe("test/ask", lambda t, p, props: answerer.reply(props, p))
    asker.subscribe("test/answers", lambda t, p, props: None)
    for link in (answerer, asker):
        link.start()
    try:
        assert asker.wait_connected(5) and answerer.wait_connected(5)
        time.sleep(0.3)                                          # both subscribed
        times = []
        for n in range(30):
            start = time.perf_counter()
            assert asker.request("test/ask", str(n).encode(), "test/answers", 5) == str(n).encode()
            times.append(time.perf_counter() - start)
        assert statistics.median(times) < 0.02, times
    finally:
        for link in (asker, answerer):
            link.stop()


def test_stop_waits_for_the_batch_in_hand(env: Env) -> None:
    """What the intake received is stored before stop() returns (its acks go when the link is up)."""
    offline = MqttLink("127.0.0.1", 1, "never-connected")          # publish raises HostUnavailable
    ingest = SaleIngest(env.sessions, offline, lambda: NOW)
    with env.sessions() as s:
        before = s.scalar(select(func.count()).select_from(Transaction)) or 0     # the seed's
    ingest.start()
    sales = [sale() for _ in range(120)]
    for each in sales:
        ingest.on_sale("forecourt/v1/terminal/T-0001/sales", m.encode(each, m.SALE), None)
    done = threading.Event()
    threading.Thread(target=lambda: (ingest.stop(), done.set())).start()
    assert done.wait(30)
    with env.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Transaction)) == before + 120


def test_a_later_subscription_gets_the_topics_already_routed(mosquitto: int) -> None:  # noqa: F811
    """MqttLink remembers each topic's handlers; a subscription added later gets the topics seen before."""
    link = MqttLink("127.0.0.1", mosquitto, "router")
    got: list[tuple[str, bytes]] = []
    link.subscribe("test/#", lambda t, p, props: got.append(("all", p)))
    sender = MqttLink("127.0.0.1", mosquitto, "sender")
    for each in (link, sender):
        each.start()
    try:
        assert link.wait_connected(5) and sender.wait_connected(5)
        time.sleep(0.3)
        sender.publish("test/T-1/sales", b"1")
        assert wait_until(lambda: got == [("all", b"1")])
        link.subscribe("test/+/sales", lambda t, p, props: got.append(("sales", p)))
        time.sleep(0.3)
        sender.publish("test/T-1/sales", b"2")      # (mosquitto sends a copy per matching filter)
        assert wait_until(lambda: ("sales", b"2") in got and ("all", b"2") in got), got
    finally:
        for each in (link, sender):
            each.stop()


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.02)
    return cond()


def test_a_reconnect_does_not_hold_sales_behind_the_configurations(tmp_path: Path) -> None:
    """After the broker comes back, the registry republishes every device's configuration; a sale sent
    meanwhile is acknowledged before the last configuration goes out (before: all were published on the
    network thread first, in the reconnect callback)."""
    port, devices = free_port(), 1500
    broker = start_mosquitto(tmp_path, port)
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", port,
                   seed=SEED)
    with reg.sessions() as s:
        model = s.get(Device, "T-0001")
        assert model is not None
        for n in range(devices):
            s.add(Device(id=f"Z-{n:05d}", station_id="ST-001", pin_key_hex=model.pin_key_hex,
                         status="active"))
        s.commit()
    order: list[str] = []
    last = f"forecourt/v1/terminal/Z-{devices - 1:05d}/config"
    terminal = MqttLink("127.0.0.1", port, "T-0001", session_expiry=600)
    terminal.subscribe("forecourt/v1/terminal/T-0001/inbox", lambda t, p, props: order.append("ack"))
    terminal.subscribe(last, lambda t, p, props: order.append("last config"))
    reg.start()
    terminal.start()
    try:
        assert wait_until(lambda: "last config" in order, 60)         # the first round, at start
        broker.stop()
        order.clear()
        broker = start_mosquitto(tmp_path, port)
        assert wait_until(lambda: reg.link.connected.is_set() and terminal.connected.is_set(), 15)
        payload = m.encode(sale(), m.SALE)
        for _ in range(120):              # as the terminal's sync does: again until acknowledged
            terminal.publish("forecourt/v1/terminal/T-0001/sales", payload)
            if wait_until(lambda: "ack" in order, 0.5):
                break
        assert wait_until(lambda: "ack" in order and "last config" in order, 60), order
        assert order.index("ack") < order.index("last config"), order
    finally:
        terminal.stop()
        reg.stop()
        broker.stop()


def test_a_terminals_voided_flag_is_dropped_and_a_later_void_works(env: Env) -> None:
    """A terminal may not send a flag the registry sets ("voided": debited yet never counted, and an
    operator's void finding it done): it is dropped, the sale flagged for an operator, and voids as any."""
    with env.sessions() as s:
        balance = s.get(Wallet, 1).balance          # type: ignore[union-attr]
    before = env.usage(1)
    doc, ack = env.sale(env.auth()["auth_id"], volume_cl=4000, flags=["voided", "totals_mismatch"])
    assert ack == {"sale_id": doc["sale_id"], "status": "stored", "reason": ""}
    assert env.usage(1) == before + 4000
    with env.sessions() as s:
        tx = s.scalar(select(Transaction).where(Transaction.sale_id == doc["sale_id"]))
        assert tx is not None and tx.flags == f"totals_mismatch,{FLAG_REFUSED}" and not tx.held
        done = void_sale(s, doc["sale_id"], actor="op", reason="terminal said voided", now=NOW)
        s.commit()
        assert not done.again and [x.amount for x in done.money] == [4000]
        assert s.get(Wallet, 1).balance == balance      # type: ignore[union-attr]
        audits = s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "sale.void")).all()
        assert audits == [f"sale:{doc['sale_id']}"]
    assert env.usage(1) == before


def test_every_flag_the_registry_sets_is_one_a_terminal_may_not_send() -> None:
    """REGISTRY_FLAGS against the registry's code: each flag literal it appends to a sale's flags (but
    "over_authorized", which a terminal sets too, and "card_<status>", matched by its prefix)."""
    root = Path(__file__).resolve().parents[1] / "registry"
    found = {flag for path in root.rglob("*.py")
             for flag in re.findall(r'flags\.append\("([a-z_]+)"\)', path.read_text(encoding="utf-8"))}
    assert found > {"unknown_terminal", "overdrawn"}                     # the pattern finds them
    assert found - REGISTRY_FLAGS == {"over_authorized"}
    assert {VOIDED, FLAG_REFUSED, "voucher_not_redeemed"} <= REGISTRY_FLAGS
    assert terminal_flags(["offline", "card_blocked", "over_authorized"]) == \
        ["offline", "over_authorized", FLAG_REFUSED]
    assert terminal_flags(["offline"]) == ["offline"]
