"""Issue 17's scenarios on ONE simulator with the terminal's GPIO header: pump 3 behind a pump node, pump 4
on the terminal's own GPIO, the door and tamper switches, lamps and buzzer; real pcscd, mosquitto, the
registry and the terminal as processes. Then the terminal is killed mid-filling on the GPIO pulser and
settles, once, from the pulses it had counted."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.pulser.meter import amount_for
from hostsim.pulser_site import GPIO_PUMP, NODE_PUMP, PINS
from hostsim.scenarios import SCENARIOS, SIM_OPTIONS, Run
from hostsim.scenarios_pulser import PRICES, PULSER_SCENARIOS, release
from hostsim.world import Simulator

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ORDER = ("pulser-sale", "pulser-node-restart", "tamper-open")
PAN = "7077001000000019"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    s = Simulator(Path(tmp_path_factory.mktemp("issue17")) / "sim", **SIM_OPTIONS["pulser-sale"]).start()
    try:
        yield s
    finally:
        s.stop()


def test_every_scenario_runs_from_forecourt_sim() -> None:
    assert set(ORDER) == set(PULSER_SCENARIOS) and set(ORDER) <= set(SCENARIOS)
    assert all(SIM_OPTIONS[name]["pulser"] for name in ORDER)


def _back_to_idle(sim: Simulator) -> None:
    sim.cards.remove()
    assert sim.site is not None
    sim.site.header.drive(PINS["door"], False)
    sim.site.meter.hang()
    sim.site.node.hang()
    for _ in range(5):
        if sim.panel.screens and sim.panel.screens[-1]["screen"] in ("idle", "idle_bank_only"):
            return
        sim.panel.press("CANCEL")
        time.sleep(1.0)


@pytest.mark.parametrize("name", ORDER)
def test_scenario(sim: Simulator, name: str) -> None:
    run = Run(sim)
    t0 = time.monotonic()
    try:
        PULSER_SCENARIOS[name](run)
    except BaseException:
        _back_to_idle(sim)
        raise
    finally:
        sim.panel.listeners.pop()
        print(f"{name}: {time.monotonic() - t0:.1f} s")
        print("\n".join(run.transcript[-60:]))
    assert run.checks == [], run.checks
    assert PAN not in "\n".join(run.transcript)


def test_terminal_killed_mid_filling_settles_from_the_counted_pulses(sim: Simulator) -> None:
    assert sim.site is not None
    meter, header = sim.site.meter, sim.site.header
    run = Run(sim)
    try:
        run.ready()
        start = meter.pulses
        release(run, GPIO_PUMP, "20")
        meter.lift()
        deadline = time.monotonic() + 30
        while meter.pulses < start + 500:
            assert time.monotonic() < deadline, "the meter never gave 5 L"
            time.sleep(0.01)
        sim.kill_terminal()                          # a power cut of the terminal alone, mid-filling
        given_at_kill = meter.pulses - start
        state = sim.terminal_config.parent / f"pulser-{GPIO_PUMP}.json"
        saved = json.loads(state.read_text())
        sim.cards.remove()
        sim.start_terminal()
        header.wait_output(PINS["relay"], False, 30)  # the restarted terminal closes the valve first
        meter.hang()
        sale_id = run.last_sale_id()
        rec = run.wait_synced(sale_id, timeout=60)
    finally:
        sim.panel.listeners.pop()
        _back_to_idle(sim)
    filling = saved["count"]                          # K = 100: one pulse is one centilitre
    assert rec.synced and rec.recovered
    assert rec.volume_cl == filling and rec.amount_cents == amount_for(filling, PRICES[GPIO_PUMP])
    # what flowed between the last save (every 200 ms) and the kill is the only fuel not sold
    assert given_at_kill - (meter.flow * 0.2 + 1) <= filling <= given_at_kill
    rows = [s for s in sim.registry_sales() if s["sale_id"] == sale_id]
    assert len(rows) == 1 and rows[0]["volume_cl"] == filling


def test_terminal_killed_mid_filling_on_the_node_the_node_fills_on_and_the_sale_settles_once(
        sim: Simulator) -> None:
    """The pump node counts on while the terminal is down and stops at the preset; the restarted terminal
    recovers the sale and settles the whole preset from the node's figures, once."""
    assert sim.site is not None
    node = sim.site.node
    run = Run(sim)
    try:
        run.ready()
        before = node.core.totals()
        release(run, NODE_PUMP, "20")
        node.lift()
        deadline = time.monotonic() + 30
        while node.core.count < 500:
            assert time.monotonic() < deadline, "the node never counted 5 L"
            time.sleep(0.01)
        sim.kill_terminal()
        sim.cards.remove()
        deadline = time.monotonic() + 30
        while node.core.state != 6:                  # the node stops at the preset on its own
            assert time.monotonic() < deadline, f"the node did not finish the filling: {node.core.state}"
            time.sleep(0.02)
        sim.start_terminal()
        sale_id = run.last_sale_id()
        rec = run.wait_synced(sale_id, timeout=60)
        node.hang()
    finally:
        sim.panel.listeners.pop()
        _back_to_idle(sim)
    assert rec.synced and rec.recovered and rec.volume_cl == 2000
    assert rec.amount_cents == amount_for(2000, PRICES[NODE_PUMP]) and not rec.flags
    assert node.core.totals() == (before[0] + 2000, before[1] + amount_for(2000, PRICES[NODE_PUMP]))
    assert [s["volume_cl"] for s in sim.registry_sales() if s["sale_id"] == sale_id] == [2000]


def test_the_terminal_tells_systemd_it_is_ready_and_feeds_the_watchdog(sim: Simulator,
                                                                       tmp_path: Path) -> None:
    """As under systemd (Type=notify, WatchdogSec=2): READY=1 once recovery is done, WATCHDOG=1 about
    every second after; STOPPING=1 on a clean stop."""
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        listener.bind(str(path))
        listener.settimeout(30)
        if sim.terminal is not None:
            sim.terminal.stop()
        sim.start_terminal({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        got: list[str] = []
        t0 = time.monotonic()
        while sum(m == "WATCHDOG=1" for m in got) < 3:
            got.append(listener.recv(4096).decode())
        fed_in = time.monotonic() - t0
        assert got[0].startswith("READY=1"), got
        assert fed_in < 30
        assert sim.terminal is not None
        sim.terminal.stop()
        sim.terminal = None
        tail = []
        while not any(m.startswith("STOPPING=1") for m in tail):
            tail.append(listener.recv(4096).decode())
    finally:
        listener.close()
        if sim.terminal is None:
            sim.start_terminal()


def test_no_card_number_in_the_logs(sim: Simulator) -> None:
    logs = "\n".join((sim.state / name).read_text(errors="replace")
                     for name in ("terminal.log", "registry.log"))
    assert "terminal started" in logs
    assert PAN not in logs
