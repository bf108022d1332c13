"""A registry that keeps up (issue 13): a wallet's monthly usage is read from indexes (r0004) and always
equals the sum recomputed from its rows; an authorization is not answered behind a backlog of sales.

The project's standard "every balance is the sum of its ledger movements": after a mix of sales over several
months (counted, held, duplicate, conflict, release of nothing) wallet_usage_cl gives what the transactions
and open holds add up to. Timings belong in benchmarks/registry_auth_under_flood.py, not here.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import select, text
from test_mqtt_sync import MOSQUITTO, free_port, wait_for
from test_registry_service import ACME, ACME2, NORTHWIND, PIN_KEY, SEED, Env, sqlite_env

from contracts import messages as m
from contracts import protocol
from contracts.panseal import derive_pan_key, seal_pan
from drivers.mqtt import MqttLink
from registry.broker import broker_config
from registry.models import Authorization, SaleConflict, Transaction
from registry.server import Registry, utcnow
from registry.service import record_sales

AUTH_TOPIC = protocol.topic("auth_request", terminal="T-0001")
INBOX = protocol.topic("terminal_inbox", terminal="T-0001")
MONTHS = [dt.datetime(2025, 1, 20, 9, 0), dt.datetime(2025, 2, 10, 9, 0), dt.datetime(2025, 3, 15, 12, 0)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    yield from sqlite_env(tmp_path)


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def recomputed(env: Env, wallet: int, now: dt.datetime) -> int:
    """The usage summed in Python over every row: counted sales since the month began, plus open holds."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with env.sessions() as s:
        sales = sum(t.volume_cl for t in s.scalars(select(Transaction)).all()
                    if t.wallet_id == wallet and not t.held and t.finished_at >= start)
        holds = sum(a.allowed_cl for a in s.scalars(select(Authorization)).all()
                    if a.wallet_id == wallet and a.status == "open" and a.expires_at > now)
    return sales + holds


def mixed_months(env: Env) -> None:
    """Counted, held, duplicate, conflict and released sales, and open holds, in three months."""
    for i, now in enumerate(MONTHS):
        def sale(auth_id: str | None, volume_cl: int = 2000, now: dt.datetime = now,
                 **over: object) -> dict[str, object]:
            doc, _ = env.sale(auth_id, volume_cl, finished_at=stamp(now - dt.timedelta(minutes=1)), **over)
            return doc

        counted = sale(env.auth(ACME, now=now)["auth_id"], 1000 + i)
        assert env.record(counted, now)["status"] == "duplicate"                          # counted once
        assert env.record({**counted, "volume_cl": 1}, now)["reason"] == "conflict"       # kept apart
        sale(env.auth(ACME2, now=now)["auth_id"], 99_999)                                 # over: held
        sale(env.auth(ACME, now=now)["auth_id"], 0, amount_cents=0)                       # released
        sale(str(uuid.uuid4()), 0, amount_cents=0)                                        # release of nothing
        sale(None, 700, kind="bank")                                                      # no wallet
        env.auth(ACME, now=now)                                                           # an open hold
        env.auth(NORTHWIND, now=now)                                                      # declined: used up


def check_usage_is_the_sum_of_the_rows(env: Env) -> None:
    mixed_months(env)
    for now in [*MONTHS, MONTHS[-1] + dt.timedelta(hours=1), MONTHS[-1] + dt.timedelta(days=40)]:
        for wallet in (1, 2):
            assert env.usage(wallet, now) == recomputed(env, wallet, now), (wallet, now)
    assert env.usage(1, MONTHS[-1]) > 0


def test_usage_is_the_sum_of_the_rows(env: Env) -> None:
    check_usage_is_the_sum_of_the_rows(env)


def sale_doc(auth_id: str | None, volume_cl: int = 2000, **over: object) -> dict[str, object]:
    doc = {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": auth_id, "terminal": "T-0001",
           "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": volume_cl,
           "amount_cents": (volume_cl * 1659 + 500) // 1000, "price_milli": 1659,
           "card_masked": "707700******0019", "finished_at": stamp(MONTHS[-1] - dt.timedelta(minutes=1)),
           "recovered": False, "flags": [], **over}
    return m.decode(m.encode(doc, m.SALE), m.SALE)


def check_a_batch_answers_as_sales_one_by_one(env: Env) -> None:
    """One transaction for several sales: stored, held, a duplicate and a conflict within the batch, a
    release; the answers of record_sale, and the usage still the sum of the rows."""
    now = MONTHS[-1]
    counted = sale_doc(env.auth(ACME, now=now)["auth_id"], 1500)
    over = sale_doc(env.auth(ACME2, now=now)["auth_id"], 99_999)
    release = sale_doc(str(uuid.uuid4()), 0, amount_cents=0)
    batch = [counted, over, dict(counted), {**counted, "volume_cl": 1}, release]
    with env.sessions() as s:
        acks = record_sales(s, batch, now)
    assert [(a or {}).get("status") for a in acks] == ["stored", "stored", "duplicate", "rejected", "stored"]
    assert [(a or {}).get("reason") for a in acks] == ["", "held", "", "conflict", ""]
    assert env.count(SaleConflict, SaleConflict.sale_id == counted["sale_id"]) == 1
    assert env.usage(1, now) == recomputed(env, 1, now) >= 1500


def check_a_sale_that_cannot_be_stored_fails_alone(env: Env) -> None:
    """A row the database refuses: the batch is recorded sale by sale, that one answers None (left
    unacknowledged), the others are stored."""
    now = MONTHS[-1]
    good = [sale_doc(None, 700, kind="bank") for _ in range(3)]
    broken = {**good[1], "sale_id": str(uuid.uuid4()), "station": None}      # NOT NULL
    with env.sessions() as s:
        acks = record_sales(s, [good[0], broken, good[1], good[2]], now)
    assert [a is None for a in acks] == [False, True, False, False]
    assert env.count(Transaction, Transaction.sale_id == broken["sale_id"]) == 0
    assert all(env.count(Transaction, Transaction.sale_id == g["sale_id"]) == 1 for g in good)


def test_a_batch_answers_as_sales_one_by_one(env: Env) -> None:
    check_a_batch_answers_as_sales_one_by_one(env)


def test_a_sale_that_cannot_be_stored_fails_alone(env: Env) -> None:
    check_a_sale_that_cannot_be_stored_fails_alone(env)


def test_usage_reads_a_range_of_the_wallet_index_not_the_history(env: Env) -> None:
    """SQLite's plan: both sums search their index by wallet (and date), neither scans a table."""
    mixed_months(env)
    start, now = "2025-03-01 00:00:00", "2025-03-15 12:00:00"
    with env.engine.connect() as conn:
        sales = conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(volume_cl), 0) FROM transactions "
            "WHERE wallet_id = 1 AND held = 0 AND finished_at >= :start"), {"start": start}).all()
        holds = conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT coalesce(sum(allowed_cl), 0) FROM authorizations "
            "WHERE wallet_id = 1 AND status = 'open' AND expires_at > :now"), {"now": now}).all()
    assert "SEARCH transactions USING INDEX ix_transactions_wallet_usage (wallet_id=? AND finished_at>?)" \
        in [row[-1] for row in sales]
    assert "SEARCH authorizations USING COVERING INDEX ix_authorizations_wallet_hold " \
        "(wallet_id=? AND status=? AND expires_at>?)" in [row[-1] for row in holds]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A real mosquitto on a free loopback port (registry.broker's configuration); its port."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(broker_config(port))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _listening(port), 10), "mosquitto did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _bank_sale(terminal: str = "T-0001") -> bytes:
    return m.encode({"sale_id": str(uuid.uuid4()), "kind": "bank", "auth_id": None, "terminal": terminal,
                     "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 2000,
                     "amount_cents": 3318, "price_milli": 1659, "card_masked": "476173******0010",
                     "finished_at": stamp(utcnow()), "recovered": False, "flags": []}, m.SALE)


def test_an_authorization_is_answered_before_a_backlog_of_sales(mosquitto: int, tmp_path: Path) -> None:
    """The issue's flood: 800 sales wait at the broker, then a request; it is answered while most of the
    sales are still unacknowledged, not behind them (an order, not a time)."""
    sales = 800
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "registry", "127.0.0.1", mosquitto,
                   seed=SEED)
    terminal = MqttLink("127.0.0.1", mosquitto, "T-0001")
    acks: list[bytes] = []
    terminal.subscribe(protocol.topic("terminal_inbox", terminal="T-0001"),
                       lambda t, p, props: acks.append(p))
    flood = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv5)
    flood.max_inflight_messages_set(1000)
    terminal.start()
    flood.connect("127.0.0.1", mosquitto)
    flood.loop_start()
    reg.start()
    try:
        assert reg.link.wait_connected(5) and terminal.wait_connected(5)
        assert m.decode(terminal.request(AUTH_TOPIC, auth_request(), INBOX, 15),
                        m.AUTH_RESPONSE)["approved"]           # both registry clients subscribed (a readiness
        #                                                        check: the order below is what is tested)
        sent = [flood.publish(protocol.topic("sales", terminal="T-0001"), _bank_sale(), qos=1)
                for _ in range(sales)]
        for info in sent:
            info.wait_for_publish(10)                          # every sale queued at the broker first
        answer = m.decode(terminal.request(AUTH_TOPIC, auth_request(), INBOX,
                                           30), m.AUTH_RESPONSE)
        acked_then = len(acks)
        assert answer["approved"]
        assert acked_then < sales // 2, acked_then
        assert wait_for(lambda: len(acks) == sales, 60)        # and every sale is acknowledged once stored
        assert {m.decode(p, m.SALE_ACK)["status"] for p in acks} == {"stored"}
    finally:
        flood.loop_stop()
        flood.disconnect()
        terminal.stop()
        reg.stop()


def auth_request(pan: str = ACME, terminal: str = "T-0001") -> bytes:
    rid = str(uuid.uuid4())
    return m.encode({"request_id": rid, "terminal": terminal, "station": "ST-001", "pump": 1,
                     "pan_sealed": seal_pan(derive_pan_key(PIN_KEY), pan, request_id=rid, terminal=terminal,
                                            station="ST-001"),
                     "expiry": "2912",
                     "pin_block": encipher_pinblock_iso_4(PIN_KEY, "1234", pan).hex().upper(),
                     "medium": "chip", "prompts": {}},
                    m.AUTH_REQUEST)
