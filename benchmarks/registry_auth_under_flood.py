"""Registry authorizations while terminals flush their sale backlog (issue 13, "A registry that keeps up").

Part 1: a real mosquitto and the registry on SQLite; 100 simulated terminals publish N sales (5,000 by
default) as fast as the broker takes them, while one terminal asks for a fleet authorization every 50 ms.
Prints authorization latency p50/p99/max during the flood against the 1 s p99 target, and how long the
sales took to be acknowledged.
Part 2: wallet_usage_cl with 1k and with 50k sales of the wallet in its history, with the r0004 indexes
and without them (the scan the issue measured).
Run: .venv/bin/python benchmarks/registry_auth_under_flood.py [sales]
"""

from __future__ import annotations

import datetime as dt
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from psec.pinblock import encipher_pinblock_iso_4
from sqlalchemy import insert, select, text

from contracts import messages as m
from contracts import protocol
from contracts.errors import HostUnavailable
from contracts.panseal import derive_pan_key, seal_pan
from drivers.mqtt import MqttLink
from registry.broker import broker_config
from registry.db import open_database
from registry.keys import load_or_create_keys
from registry.models import Device, Transaction
from registry.seed import apply_seed, load_seed
from registry.server import Registry, utcnow
from registry.service import wallet_usage_cl

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "hostsim" / "fixtures" / "seed.toml"
MOSQUITTO = "/usr/sbin/mosquitto"
PIN_KEY = bytes.fromhex("8B2F4E01A7C3D95E6F1028374C5D6E7F")       # T-0001 in the seed
PAN, STATION, TERMINALS = "7077001000000019", "ST-001", 100      # the issue: 100 terminals flush a backlog
TARGET_P99_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ASKER = f"T-{TERMINALS + 1:04d}"        # asks for authorizations and sends no sales
AUTH_TOPIC = protocol.topic("auth_request", terminal=ASKER)
ASKER_INBOX = protocol.topic("terminal_inbox", terminal=ASKER)


def auth_request(terminal: str = "T-0001") -> bytes:
    rid = str(uuid.uuid4())
    req = {"request_id": rid, "terminal": terminal, "station": STATION, "pump": 1,
           "pan_sealed": seal_pan(derive_pan_key(PIN_KEY), PAN, request_id=rid, terminal=terminal,
                                  station=STATION),
           "expiry": "2912", "pin_block": encipher_pinblock_iso_4(PIN_KEY, "1234", PAN).hex().upper(),
           "medium": "chip", "prompts": {}}
    return m.encode(req, m.AUTH_REQUEST)


def bank_sale(terminal: str) -> bytes:
    done = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return m.encode({"sale_id": str(uuid.uuid4()), "kind": "bank", "auth_id": None, "terminal": terminal,
                     "station": STATION, "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 2000,
                     "amount_cents": 3318, "price_milli": 1659, "card_masked": "476173******0010",
                     "finished_at": done, "recovered": False, "flags": []}, m.SALE)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def flood(work: Path, sales: int) -> None:
    port = free_port()
    (work / "mosquitto.conf").write_text(broker_config(port))
    broker = subprocess.Popen([MOSQUITTO, "-c", str(work / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    reg = Registry(f"sqlite:///{work / 'registry.db'}", work / "registry", "127.0.0.1", port, seed=SEED)
    with reg.sessions() as s:
        model = s.get(Device, "T-0001")
        assert model is not None
        for i in range(2, TERMINALS + 2):
            s.merge(Device(id=f"T-{i:04d}", station_id=STATION, pin_key_hex=model.pin_key_hex,
                           status="active"))
        s.commit()
    reg.start()
    terminals: list[MqttLink] = []
    try:
        acked = threading.Semaphore(0)
        for i in range(1, TERMINALS + 1):
            link = MqttLink("127.0.0.1", port, f"bench-{i:04d}")
            link.subscribe(protocol.topic("terminal_inbox", terminal=f"T-{i:04d}"),
                           lambda t, p, props: acked.release())
            link.start()
            assert link.wait_connected(5)
            terminals.append(link)
        asker = MqttLink("127.0.0.1", port, "bench-asker")
        asker.start()
        assert asker.wait_connected(5) and reg.link.wait_connected(5)
        time.sleep(0.5)
        latencies: list[float] = []
        answers: dict[str, int] = {}
        flooding = threading.Event()
        flooding.set()

        def ask() -> None:
            while flooding.is_set():
                start = time.perf_counter()
                try:
                    doc = m.decode(asker.request(AUTH_TOPIC, auth_request(ASKER),
                                                 ASKER_INBOX, timeout=10), m.AUTH_RESPONSE)
                    latencies.append(time.perf_counter() - start)
                    answers[str(doc["reason"])] = answers.get(str(doc["reason"]), 0) + 1
                except HostUnavailable:        # a timeout counts as 10 s
                    latencies.append(10.0)
                    answers["timeout"] = answers.get("timeout", 0) + 1
                time.sleep(0.05)
        asker.subscribe(ASKER_INBOX, lambda t, p, props: None)
        time.sleep(0.3)

        def send(link: MqttLink, terminal: str, count: int) -> None:
            for _ in range(count):
                link.publish(protocol.topic("sales", terminal=terminal), bank_sale(terminal))

        start = time.perf_counter()
        per = sales // TERMINALS
        senders = [threading.Thread(target=send, args=(link, f"T-{i + 1:04d}", per))
                   for i, link in enumerate(terminals)]
        for t in senders:
            t.start()
        asking = threading.Thread(target=ask)
        asking.start()
        for t in senders:
            t.join()
        got = 0
        deadline = time.monotonic() + 600
        while got < per * TERMINALS and time.monotonic() < deadline:
            if acked.acquire(timeout=1):
                got += 1
        elapsed = time.perf_counter() - start
        flooding.clear()
        asking.join()
        print(f"flood: {per * TERMINALS} sales from {TERMINALS} terminals, {got} acked in {elapsed:.1f} s "
              f"({got / elapsed:.0f} sales/s)")
        p99 = percentile(latencies, 0.99)
        p50 = statistics.median(latencies)
        print(f"authorization during the flood: n={len(latencies)} p50={p50 * 1000:.0f} ms "
              f"p99={p99 * 1000:.0f} ms max={max(latencies) * 1000:.0f} ms answers={answers} "
              f"(target p99 < {TARGET_P99_S * 1000:.0f} ms: {'met' if p99 < TARGET_P99_S else 'MISSED'})")
        asker.stop()
    finally:
        for link in terminals:
            link.stop()
        reg.stop()
        broker.terminate()
        broker.wait(5)


def usage_time(work: Path, history: int) -> tuple[float, float]:
    """Median wallet_usage_cl time (s) with `history` sales of wallet 1 over 24 months: indexed, scanned."""
    engine, sessions = open_database(f"sqlite:///{work / f'usage-{history}.db'}")
    keys = load_or_create_keys(work / f"keys-{history}.json")
    now = dt.datetime(2026, 12, 15, 12, 0)
    with sessions() as s:
        apply_seed(s, keys, load_seed(SEED), now)
        rows: list[dict[str, Any]] = [
            {"sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": str(uuid.uuid4()), "card_id": 1,
             "wallet_id": 1, "device_id": "T-0001", "station_id": STATION, "pump": 1, "nozzle": 1,
             "product": "diesel", "volume_cl": 100, "amount_cents": 166, "price_milli": 1659,
             "card_masked": "707700******0019", "recovered": False, "flags": "", "held": False,
             "finished_at": now - dt.timedelta(minutes=i * 24 * 30 * 24 * 60 // history),
             "received_at": now}
            for i in range(history)]
        s.execute(insert(Transaction), rows)
        s.commit()
        s.execute(text("ANALYZE"))

    def median(runs: int = 200) -> float:
        times = []
        with sessions() as s:
            for _ in range(runs):
                start = time.perf_counter()
                wallet_usage_cl(s, 1, now)
                times.append(time.perf_counter() - start)
        return statistics.median(times)

    indexed = median()
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_transactions_wallet_usage"))
    scanned = median()
    with sessions() as s:
        assert s.scalar(select(Transaction.id).limit(1)) is not None
    engine.dispose()
    return indexed, scanned


def main() -> None:
    sales = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        flood(work, sales)
        for history in (1_000, 50_000):
            indexed, scanned = usage_time(work, history)
            print(f"wallet_usage_cl with {history} sales in history: {indexed * 1000:.2f} ms with the r0004 "
                  f"index, {scanned * 1000:.2f} ms scanning")


if __name__ == "__main__":
    main()
