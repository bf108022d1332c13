"""Registry sales intake through a real mosquitto (issue 13, "Figures").

1, 10 and 100 simulated terminals (paho clients, MQTT 5, QoS 1) each keep up to 20 sales unacknowledged, as
a terminal's sync window does, and send the next on each ack. The registry runs as `forecourt registry run`
(plus `--ingest-only` workers with --workers N), on SQLite, then on PostgreSQL (tests/pg_server.py) when
installed. Prints, per run: sales/s stored and acknowledged, p50/p99 ack latency, the raw rate of the same
messages from the same publishers to a plain subscriber in the same run (the mean of one measure before the
registry's and one after), the ratio, and lost/duplicated sales (must be 0/0: exit 1 otherwise).
Run: .venv/bin/python benchmarks/registry_ingest.py [--sales N] [--terminals 1 10 100] [--workers 2 ...]
[--no-postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts import messages as m
from contracts import protocol
from hostsim.services import Process, forecourt_command, free_port, start_mosquitto, wait_port
from registry.models import Device, Transaction
from registry.server import Registry, utcnow

SEED = ROOT / "hostsim" / "fixtures" / "seed.toml"
STATION, WINDOW, TARGET_RATIO = "ST-001", 20, 0.5


def sale(terminal: str) -> tuple[str, bytes]:
    sale_id = str(uuid.uuid4())
    done = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return sale_id, m.encode({"sale_id": sale_id, "kind": "bank", "auth_id": None, "terminal": terminal,
                              "station": STATION, "pump": 1, "nozzle": 1, "product": "diesel",
                              "volume_cl": 2000, "amount_cents": 3318, "price_milli": 1659,
                              "card_masked": "476173******0010", "finished_at": done, "recovered": False,
                              "flags": []}, m.SALE)


def client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(WINDOW)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    return c


@dataclass
class Terminal:
    """One terminal: up to WINDOW sales unacknowledged; each ack sends the next one."""
    name: str
    sales: list[tuple[str, bytes]]
    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    acks: dict[str, int] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next: int = 0

    def send(self, c: mqtt.Client) -> None:
        with self.lock:
            if self.next >= len(self.sales):
                return
            sale_id, payload = self.sales[self.next]
            self.next += 1
            self.sent[sale_id] = time.perf_counter()
        c.publish(protocol.topic("sales", terminal=self.name), payload, qos=1)

    def on_ack(self, c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ack = m.decode(msg.payload, m.SALE_ACK)
        self.acks[ack["sale_id"]] = self.acks.get(ack["sale_id"], 0) + 1
        if self.acks[ack["sale_id"]] == 1 and ack["sale_id"] in self.sent:
            self.latencies.append(time.perf_counter() - self.sent[ack["sale_id"]])
            self.send(c)
        if len(self.latencies) == len(self.sales):
            self.done.set()


def close(*clients: mqtt.Client) -> None:
    """Disconnect all first: each network thread then ends at once, not after its 1 s select."""
    for c in clients:
        c.disconnect()
    for c in clients:
        c.loop_stop()


def raw_rate(port: int, batches: dict[str, list[tuple[str, bytes]]]) -> float:
    """The same messages from the same number of publishers to one plain QoS 1 subscriber: messages/s."""
    total = sum(len(b) for b in batches.values())
    got = threading.Semaphore(0)
    sub = client(port, "bench-raw-sub")
    sub.on_message = lambda c, u, msg: got.release()
    sub.subscribe("bench/raw/#", qos=1)
    sub.loop_start()
    pubs = [client(port, f"bench-raw-{name}") for name in batches]
    for p in pubs:
        p.loop_start()
    time.sleep(0.3)
    start = time.perf_counter()

    def publish(p: mqtt.Client, name: str) -> None:
        for _, payload in batches[name]:
            p.publish(f"bench/raw/{name}", payload, qos=1)

    threads = [threading.Thread(target=publish, args=(p, n)) for p, n in zip(pubs, batches, strict=True)]
    for t in threads:
        t.start()
    received, deadline = 0, time.monotonic() + 60
    while received < total and got.acquire(timeout=max(0.0, deadline - time.monotonic())):
        received += 1                     # (mosquitto drops beyond max_queued_messages 10000)
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    close(*pubs, sub)
    return received / elapsed


@contextlib.contextmanager
def registry(work: Path, url: str, port: int, terminals: int, workers: int) -> Iterator[int]:
    """`forecourt registry run` (and workers - 1 `--ingest-only` processes) on a database of the terminals."""
    reg = Registry(url, work / "state", "127.0.0.1", port, seed=SEED)
    with reg.sessions() as s:
        model = s.get(Device, "T-0001")
        assert model is not None
        for i in range(2, terminals + 1):
            s.merge(Device(id=f"T-{i:04d}", station_id=STATION, pin_key_hex=model.pin_key_hex,
                           status="active"))
        s.commit()
        before = s.scalar(select(func.count()).select_from(Transaction)) or 0    # the seed's own sales
    reg.engine.dispose()
    common = ["--db", url, "--mqtt", f"127.0.0.1:{port}", "--state-dir", str(work / "state")]
    procs = [Process("registry", forecourt_command("registry", "run", *common), work / "registry.log")]
    procs += [Process(f"worker-{n}", forecourt_command("registry", "run", *common, "--ingest-only",
                                                       "--worker", f"w{n}"), work / f"worker-{n}.log")
              for n in range(2, workers + 1)]
    try:
        probe = client(port, "bench-probe")      # every registry client subscribed: config retained
        seen = threading.Event()
        probe.on_message = lambda c, u, msg: seen.set()
        probe.subscribe(protocol.topic("config", terminal="T-0001"), qos=1)
        probe.loop_start()
        if not seen.wait(30):
            raise SystemExit(f"registry did not start: {(work / 'registry.log').read_text()[-2000:]}")
        close(probe)
        time.sleep(1.0 + 0.5 * workers)       # ingest-only workers subscribed too
        yield before
    finally:
        for p in procs:
            p.stop(20)


def stored_sales(url: str, work: Path, port: int) -> tuple[set[str], int]:
    """The sale ids stored, and the number of rows."""
    reg = Registry(url, work / "state", "127.0.0.1", port)
    with reg.sessions() as s:
        rows = s.scalar(select(func.count()).select_from(Transaction)) or 0
        stored = set(s.scalars(select(Transaction.sale_id)).all())
    reg.engine.dispose()
    return stored, rows


def run(work: Path, url: str, terminals: int, sales: int, workers: int) -> bool:
    port = free_port()
    broker = start_mosquitto(work, port)
    wait_port(port, 10, broker)
    names = [f"T-{i:04d}" for i in range(1, terminals + 1)]
    batches = {n: [sale(n) for _ in range(sales // terminals)] for n in names}
    total = sum(len(b) for b in batches.values())
    try:
        raw = raw_rate(port, batches)
        with registry(work, url, port, terminals, workers) as before:
            sims = [Terminal(n, batches[n]) for n in names]
            clients = []
            for t in sims:
                c = client(port, f"bench-{t.name}")
                c.on_message = t.on_ack
                c.subscribe(protocol.topic("terminal_inbox", terminal=t.name), qos=1)
                c.loop_start()
                clients.append(c)
            time.sleep(0.5)
            start = time.perf_counter()
            for t, c in zip(sims, clients, strict=True):
                for _ in range(min(WINDOW, len(t.sales))):
                    t.send(c)
            for t in sims:
                t.done.wait(120)
            elapsed = time.perf_counter() - start
            close(*clients)
        stored, rows = stored_sales(url, work, port)
        raw = (raw + raw_rate(port, batches)) / 2          # before and after: the machine's load moves
    finally:
        broker.stop()
    sent = {sid for b in batches.values() for sid, _ in b}
    acked = [n for t in sims for n in t.acks.values()]
    lost = len(sent - stored) + sum(len(t.sales) - len(t.latencies) for t in sims)
    duplicated = rows - before - len(stored & sent) + sum(n - 1 for n in acked if n > 1)
    lat = sorted(x for t in sims for x in t.latencies)
    rate = len(lat) / elapsed
    p50 = statistics.median(lat) * 1000 if lat else float("nan")
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] * 1000 if lat else float("nan")
    backend = url.split(":", 1)[0].split("+", 1)[0]
    print(f"{backend:10s} terminals={terminals:3d} workers={workers} sales={total}: stored+acked "
          f"{rate:6.0f}/s  ack p50 {p50:6.1f} ms p99 {p99:6.1f} ms | raw broker {raw:6.0f}/s  ratio "
          f"{rate / raw:4.2f} | lost {lost} duplicated {duplicated}", flush=True)
    return lost == 0 and duplicated == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=3000, help="sales per run (default 3000)")
    ap.add_argument("--workers", type=int, nargs="+", default=[2],
                    help="after the runs of one process: registry processes sharing the sales of the most "
                         "terminals (default 2)")
    ap.add_argument("--terminals", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(n, 1) for n in args.terminals] + [(max(args.terminals), w) for w in args.workers if w > 1]
        for n, workers in runs:
            work = Path(tmp) / f"sqlite-{n}-{workers}"
            work.mkdir()
            ok &= run(work, f"sqlite:///{work / 'registry.db'}", n, args.sales, workers)
        if not args.no_postgres:
            ok &= postgres(Path(tmp), args)
    print("result:", "ok (0 lost, 0 duplicated)" if ok else "FAILED: sales lost or duplicated")
    return 0 if ok else 1


def postgres(tmp: Path, args: argparse.Namespace) -> bool:
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_server import PostgresUnavailable, postgres_server

    ok = True
    try:
        for n in args.terminals:
            work = tmp / f"pg-{n}"
            work.mkdir()
            with postgres_server(work) as url:
                ok &= run(work, url, n, args.sales, 1)
    except PostgresUnavailable as exc:
        print(f"postgresql: skipped ({exc})")
    return ok


if __name__ == "__main__":
    sys.exit(main())
