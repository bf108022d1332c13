"""Store-and-forward after an outage (issue 13): the backlog is sent oldest first through a bounded window,
paced, each sale resent only after its own ack timeout with backoff, delivered once and in order."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from contracts import messages as m
from contracts import protocol
from contracts.errors import ConfigError
from drivers.mqtt import MqttLink
from firmware.config import load_config
from firmware.hostlink import HostLink, resend_delay
from firmware.sale.journal import Journal
from firmware.sale.machine import SaleState
from registry.models import Transaction
from registry.server import Registry
from tests.test_mqtt_sync import (  # noqa: F401  (broker, registry: fixtures)
    PIN_KEY,
    STATION,
    TERMINAL,
    Broker,
    Spy,
    broker,
    completed_sale,
    registry,
    wait_for,
)

pytestmark = pytest.mark.system

SALES = protocol.topic("sales", terminal=TERMINAL)
WAITING = "sales wait for the registry"


class Stamped(Spy):
    """A spy on the sales topic that keeps when each SALE publish arrived, and whose sale it was."""

    def __init__(self, link: MqttLink) -> None:
        super().__init__(link)
        self.times: list[tuple[float, str]] = []

    def watch_sales(self) -> None:
        def handler(t: str, payload: bytes, props: Any) -> None:
            with self.lock:
                self.times.append((time.monotonic(), m.decode(payload, m.SALE)["sale_id"]))
        self.link.subscribe(SALES, handler)

    def sent(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.times)


@pytest.fixture
def stamped(broker: Broker) -> Iterator[Stamped]:  # noqa: F811
    s = Stamped(MqttLink("127.0.0.1", broker.port, "stamp-" + uuid.uuid4().hex[:8]))
    s.link.start()
    try:
        assert s.link.wait_connected(5)
        s.watch_sales()
        yield s
    finally:
        s.link.stop()


class Host:
    """A terminal's HostLink whose MQTT link is not started yet: the outage, its journal filling meanwhile."""

    def __init__(self, broker: Broker, path: Path, **pacing: Any) -> None:  # noqa: F811
        self.link = MqttLink("127.0.0.1", broker.port, TERMINAL)
        self.journal = Journal(path)
        self.host = HostLink(self.link, self.journal, TERMINAL, STATION, pin_key=PIN_KEY, **pacing)

    def back_online(self) -> None:
        self.host.start_sync()
        self.link.start()

    def close(self) -> None:
        self.host.stop_sync()
        self.link.stop()
        self.journal.close()


def stored_order(reg: Registry) -> list[str]:
    with reg.sessions() as s:
        return list(s.scalars(select(Transaction.sale_id).order_by(Transaction.id)).all())


def bank_sale(journal: Journal) -> str:
    return completed_sale(journal, "A1B2C3", program="bank")


def test_backlog_after_an_outage_is_delivered_once_in_order_with_few_publishes(
        broker: Broker, registry: Registry, stamped: Stamped, tmp_path: Path) -> None:  # noqa: F811
    """Before: every kick (each sale completed meanwhile) and every 5 s tick republished the whole backlog."""
    backlog, pace = 300, 100.0
    t = Host(broker, tmp_path / "journal.db", ack_timeout=30.0, sales_per_second=pace)
    try:
        created = [bank_sale(t.journal) for _ in range(backlog)]
        parked = bank_sale(t.journal)
        assert t.journal.park(parked, "malformed")
        assert t.host.backlog().count == backlog                 # the parked sale is an operator's
        start = time.monotonic()
        t.back_online()
        for _ in range(5):       # the terminal sells on while it forwards: each completion kicks the sync
            time.sleep(0.3)
            created.append(bank_sale(t.journal))
            t.host.kick()
        assert wait_for(lambda: t.journal.unsynced() == [], 60), t.host.backlog()
        drained = time.monotonic() - start
        assert drained < 30.0                                    # acks moved the window, no resend needed
        ours = [sid for sid in stored_order(registry) if sid in set(created)]    # (the seed has one too)
        assert ours == created                                   # each once, in order of creation
        sent = stamped.sent()
        assert parked not in {sid for _, sid in sent}
        assert len(sent) <= len(created) * 1.05, f"{len(sent)} SALE publishes for {len(created)} sales"
        assert list(dict.fromkeys(sid for _, sid in sent)) == created          # oldest first
        assert sent[-1][0] - sent[0][0] >= (len(created) - 1) / pace * 0.9        # paced
        assert t.host.backlog().count == 0 and t.host.backlog().oldest_age == 0.0
    finally:
        t.close()


def test_window_bounds_what_is_in_flight_oldest_first(broker: Broker, stamped: Stamped,  # noqa: F811
                                                     tmp_path: Path) -> None:
    """No registry answers: the first 20 sales go out once each, the rest wait for acks that never come."""
    t = Host(broker, tmp_path / "journal.db", ack_timeout=30.0, sales_per_second=1000.0)
    try:
        created = [bank_sale(t.journal) for _ in range(50)]
        t.back_online()
        assert wait_for(lambda: len(stamped.sent()) >= 20, 5)
        time.sleep(1.0)
        t.host.kick()
        time.sleep(0.5)
        assert [sid for _, sid in stamped.sent()] == created[:20]
    finally:
        t.close()


def test_unacknowledged_sale_is_resent_with_growing_gaps_up_to_the_cap(broker: Broker, stamped: Stamped,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    t = Host(broker, tmp_path / "journal.db", ack_timeout=0.3, resend_cap=1.2, jitter=lambda: 0.0)
    try:
        sale_id = bank_sale(t.journal)
        t.back_online()
        assert wait_for(lambda: len(stamped.sent()) >= 6, 15)
        times = [at for at, sid in stamped.sent()[:6]]
        assert {sid for _, sid in stamped.sent()} == {sale_id}
        gaps = [b - a for a, b in itertools.pairwise(times)]
        for gap, want in zip(gaps, [0.3, 0.6, 1.2, 1.2, 1.2], strict=True):     # doubling, then the cap
            assert want - 0.1 <= gap <= want + 0.25, gaps
    finally:
        t.close()


def test_resend_delay_backs_off_with_jitter_and_a_cap() -> None:
    assert [resend_delay(10.0, n, 0.0) for n in range(6)] == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    spread = {round(resend_delay(10.0, 1, j / 10), 3) for j in range(10)}
    assert min(spread) == 20.0 and max(spread) < 25.0 and len(spread) == 10     # jitter: up to +25 %
    assert resend_delay(10.0, 10_000, 0.5) == 60.0                               # no overflow, capped
    assert resend_delay(90.0, 0, 0.0, cap=60.0) == 60.0                          # the cap wins


def test_backlog_figures_and_their_log_line(broker: Broker, tmp_path: Path,  # noqa: F811
                                            caplog: pytest.LogCaptureFixture) -> None:
    t = Host(broker, tmp_path / "journal.db")
    try:
        assert (t.host.backlog().count, t.host.backlog().oldest_age) == (0, 0.0)
        ages = [3600.0, 60.0, 0.0]
        for age in ages:
            sid = bank_sale(t.journal)
            t.journal.transition(sid, SaleState.COMPLETED, finished_at=time.time() - age)
        parked = bank_sale(t.journal)
        t.journal.transition(parked, SaleState.COMPLETED, finished_at=time.time() - 7200)
        t.journal.park(parked, "conflict")
        figures = t.host.backlog()
        assert figures.count == 3 and 3599 <= figures.oldest_age <= 3610
        with caplog.at_level(logging.INFO, logger="firmware.hostlink"):
            t.host.start_sync()                    # offline: it says what waits, and how long
            assert wait_for(lambda: any(r.message == WAITING for r in caplog.records), 3)
        (line,) = [r for r in caplog.records if r.message == WAITING]
        assert line.levelno == logging.INFO and line.backlog == 3 and 3599 <= line.oldest_age_s <= 3610
    finally:
        t.close()


def _cfg(tmp_path: Path, mqtt: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(f'[terminal]\nid = "T1"\nstation = "S1"\n[mqtt]\n{mqtt}\n')
    return path


def test_sales_per_second_is_configured_and_checked(tmp_path: Path) -> None:
    assert load_config(_cfg(tmp_path, ""), profile="sim").mqtt.sales_per_second == 10.0
    assert load_config(_cfg(tmp_path, "sales_per_second = 50"), profile="sim").mqtt.sales_per_second == 50.0
    for bad in ("0", "-1", "0.01", "5000", "nan", "inf", '"fast"', "true"):
        with pytest.raises(ConfigError) as info:
            load_config(_cfg(tmp_path, f"sales_per_second = {bad}"), profile="sim")
        assert info.value.context["key"] == "mqtt.sales_per_second"
