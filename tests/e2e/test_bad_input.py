"""Bad input end to end: unknown and hostile cards, malformed MQTT, a broker that is down, a config typo."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contracts import protocol
from drivers.mqtt.link import tls_context
from hostsim.cards.fleet import BlankCard, HostileCard
from hostsim.scenarios import Run
from hostsim.world import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AUTH, SALES, INBOX, CONFIG = (protocol.topic(name, terminal="T-0001")
                              for name in ("auth_request", "sales", "terminal_inbox", "config"))


def journal_count(sim: Simulator) -> int:
    j = sim.journal()
    try:
        return len(j.all_sales())
    finally:
        j.close()


def happy_sale(run: Run, litres_cl: int = 1000) -> str:
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    run.fill(1, 1, litres_cl)
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    run.remove()
    return sale_id


def test_unknown_and_hostile_cards_are_refused_and_terminal_serves_next(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = sim.panel.mark()
    sim.cards.insert(BlankCard())
    run.wait("card_not_accepted", mark)
    run.remove()
    run.wait("idle", mark)
    # SELECT answered 9000 with a TLV whose length runs past the data, then garbage
    mark = sim.panel.mark()
    sim.cards.insert(HostileCard([bytes.fromhex("6F20840890009000"), b"\x01"]))
    # an unreadable chip: the terminal may offer the stripe (EMV fallback); the driver cancels
    screen = run.wait(("card_error", "swipe_card"), mark)
    if screen["screen"] == "swipe_card":
        sim.panel.press("CANCEL")
    run.remove()
    run.wait("idle", mark)
    assert journal_count(sim) == 0
    sale_id = happy_sale(run)
    assert run.wait_synced(sale_id).synced


def test_malformed_mqtt_payloads_are_dropped_and_service_goes_on(sim: Simulator, run: Run) -> None:
    run.ready()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hostile", protocol=mqtt.MQTTv5)
    client.tls_set_context(tls_context(sim.service_tls("registry")))   # the broker's widest rights
    client.connect("127.0.0.1", sim.broker_port)
    client.loop_start()
    try:
        for topic in (AUTH, SALES,
                      INBOX):
            for payload in (b"\xff\xfe", b"[]", b'{"v": 1}', b'{"v": 1, "sale_id": "x", "status": "stored"}',
                            b"{" * 5000):
                client.publish(topic, payload, qos=1).wait_for_publish(5)
        # a sale for an unknown id and a garbage retained config must not disturb the terminal either
        client.publish(INBOX,
                       b'{"v":1,"sale_id":"%s","status":"stored","reason":""}' % str(uuid.uuid4()).encode(),
                       qos=1).wait_for_publish(5)
        client.publish(CONFIG, b"not json", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()
    time.sleep(0.5)
    assert sim.terminal is not None and sim.terminal.poll() is None
    assert sim.registry is not None and sim.registry.poll() is None
    sale_id = happy_sale(run)
    rec = run.wait_synced(sale_id)
    assert rec.synced and rec.volume_cl == 1000 and rec.product == "diesel"
    assert "malformed" in (sim.state / "registry.log").read_text()


def test_broker_down_at_start_shows_offline_then_recovers(tmp_path: Path) -> None:
    sim = Simulator(tmp_path / "sim").start(broker=False)
    try:
        run = Run(sim)
        sim.panel.wait_for("offline", 30)
        mark = run.insert(0)
        run.wait("host_unavailable", mark)
        run.remove()
        assert not run.authorize_sent(1)
        sim.start_broker()
        run.ready()
        sale_id = happy_sale(run)
        assert run.wait_synced(sale_id).synced
    finally:
        sim.stop()


def test_sale_completed_while_broker_down_is_queued_then_synced_once(sim: Simulator, run: Run) -> None:
    run.ready()
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    sim.stop_broker()
    run.fill(1, 1, 1234)
    run.wait("thank_you", mark, timeout=30)
    sale_id = run.last_sale_id()
    run.remove()
    time.sleep(1.0)
    j = sim.journal()
    try:
        rec = j.get(sale_id)
        assert rec.state == "completed" and not rec.synced and rec.volume_cl == 1234
    finally:
        j.close()
    sim.start_broker()
    assert run.wait_synced(sale_id, timeout=40).synced
    assert [s["volume_cl"] for s in sim.registry_sales()] == [1234]


def test_config_typo_is_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "terminal.toml"
    cfg.write_text('[terminal]\nid = "T-1"\nstation = "S"\n\n[devices]\npumsp = [1]\n')
    out = subprocess.run([sys.executable, "-m", "forecourtcli", "terminal", "--config", str(cfg)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "pumsp" in out.stderr


def test_keys_pressed_before_the_pin_prompt_are_not_pin_digits(sim: Simulator, run: Run) -> None:
    run.ready()
    sim.panel.press("9", "9", "ENTER")        # a bored driver taps the keypad at the idle screen
    time.sleep(0.3)
    sale_id = happy_sale(run)
    assert run.wait_synced(sale_id).synced    # PIN 1234 was accepted, not 99 + 1234


def test_untrue_and_undated_sales_are_held_or_refused_and_never_counted(sim: Simulator, run: Run) -> None:
    """Issue 10: a sale dated 9999 of 10^7 cl made the wallet "limit exhausted" for good; one dated
    2025-02-30 made the registry raise with no answer, the sender resending it forever."""
    run.ready()
    forged = {"v": 1, "sale_id": str(uuid.uuid4()), "kind": "fleet", "auth_id": None, "terminal": "T-0001",
              "station": "ST-001", "pump": 1, "nozzle": 1, "product": "diesel", "volume_cl": 10**7,
              "amount_cents": (10**7 * 1659 + 500) // 1000, "price_milli": 1659,
              "card_masked": "707700******0019", "finished_at": "9999-01-01T00:00:00Z", "recovered": False,
              "flags": []}
    undated = forged | {"sale_id": str(uuid.uuid4()), "volume_cl": 1000, "amount_cents": 1659,
                        "finished_at": "2025-02-30T00:00:00Z"}
    acks: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: acks.append(msg.payload)
    client.tls_set_context(tls_context(sim.service_tls("registry")))   # the broker's widest rights
    client.connect("127.0.0.1", sim.broker_port)
    client.loop_start()
    try:
        client.subscribe(INBOX, qos=1)
        time.sleep(0.3)
        for doc in (forged, undated):
            client.publish(SALES, json.dumps(doc).encode(), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len(acks) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    answers = {d["sale_id"]: (d["status"], d["reason"]) for d in map(json.loads, acks)}
    assert answers == {forged["sale_id"]: ("stored", "held"), undated["sale_id"]: ("rejected", "malformed")}
    (stored,) = [s for s in sim.registry_sales() if s["sale_id"] == forged["sale_id"]]
    assert stored["held"] and "finished_in_future" in stored["flags"]
    sale_id = happy_sale(run)                   # the wallet still approves: the forged litres count nowhere
    rec = run.wait_synced(sale_id)
    assert rec.synced and rec.volume_cl == 1000
    assert [s["held"] for s in sim.registry_sales() if s["sale_id"] == sale_id] == [False]
