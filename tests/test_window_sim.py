"""The simulator window on a real Simulator: every fault button does the real thing, the status strip shows
it, the log pane shows no card number, and a headless scenario plays step by step.

One forecourt for the module (starting one takes seconds); the tests run in file order on it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.pump import PumpState
from hostsim.cards.emv_profile import load_profile, profile_names
from hostsim.pulser_site import PINS, PulserSite
from hostsim.scenarios import Run
from hostsim.scenarios_bank import _declined
from hostsim.window import SIZE, SimulatorWindow
from hostsim.world import Simulator, card_index, load_cards

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    s = Simulator(tmp_path_factory.mktemp("winsim") / "sim").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def display() -> Iterator[None]:
    """One pygame for the module: fonts cached by the drawing code outlive a single test."""
    old = os.environ.get("SDL_VIDEODRIVER")
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    pygame.display.init()
    pygame.font.init()
    try:
        yield
    finally:
        pygame.quit()
        if old is None:
            os.environ.pop("SDL_VIDEODRIVER", None)
        else:
            os.environ["SDL_VIDEODRIVER"] = old


@pytest.fixture
def window(sim: Simulator, display: None) -> SimulatorWindow:
    w = SimulatorWindow(sim)
    Run(sim).ready()
    return w


def click(window: SimulatorWindow, action: str, arg: object = None) -> str:
    hit = next(b for b in window.buttons if b.action == action and (arg is None or b.arg == arg))
    window.handle_click(hit.rect.center)
    window.refresh()
    window.draw(pygame.Surface(SIZE))
    return window.status


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


def until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_status_strip_of_a_running_forecourt(window: SimulatorWindow, sim: Simulator) -> None:
    window.refresh()
    strip = window.strip
    assert strip is not None and strip.broker and strip.registry and strip.acquirer and strip.terminal
    assert strip.terminal_pid == sim.terminal.pid if sim.terminal else False
    assert strip.unsynced_sales == 0
    assert until(lambda: read_config(window).endswith("(registry)"), 15), read_config(window)


def read_config(window: SimulatorWindow) -> str:
    window.refresh()
    return window.strip.config if window.strip else ""


def test_broker_down_and_up(window: SimulatorWindow, sim: Simulator) -> None:
    assert click(window, "fault", "broker_down") == "broker stopped"
    assert any(line.endswith("SIM broker stopped") for line in window.log.lines)     # the fault too
    assert refused(sim.broker_port)
    assert window.strip is not None and not window.strip.broker
    assert click(window, "fault", "broker_up") == "broker starting"
    window.faults.wait_broker(15)
    assert not refused(sim.broker_port)
    window.refresh()
    assert window.strip.broker


def test_acquirer_timeout_the_next_0100_gets_no_answer(window: SimulatorWindow, sim: Simulator) -> None:
    assert click(window, "fault", "acquirer_timeout").startswith("acquirer silent")
    assert window.strip is not None and not window.strip.acquirer and "paused" in window.strip.acquirer_note
    run = Run(sim)
    _declined(run, "visa_dda_online_pin", "1234", "host_timeout")
    assert run.checks == []
    reasons = [d["reason"] for d in sim.acquirer.decisions if d.get("mti") == "0100"]
    assert reasons[-1:] == ["no answer (paused)"]
    assert until(lambda: bool(read_queued(window)), 10)       # the reversal waits in the store-and-forward
    assert click(window, "fault", "acquirer_timeout") == "acquirer answers again"
    assert window.strip.acquirer


def read_queued(window: SimulatorWindow) -> int:
    window.refresh()
    return window.strip.queued_advices or 0 if window.strip else 0


def test_pump_line_noise_reaches_the_line(window: SimulatorWindow, sim: Simulator) -> None:
    before = sim.pump_line.noise_bytes
    assert click(window, "fault", "noise") == "pump line noisy"
    assert window.strip is not None and window.strip.line_noise
    assert until(lambda: sim.pump_line.noise_bytes >= before + 5, 5)
    assert click(window, "fault", "noise") == "pump line quiet"
    assert not window.strip.line_noise
    time.sleep(0.2)                                       # the byte of the wait under way, if any
    quiet = sim.pump_line.noise_bytes
    time.sleep(0.3)
    assert sim.pump_line.noise_bytes == quiet
    Run(sim).ready()


def test_pull_the_card_mid_transaction(window: SimulatorWindow, sim: Simulator) -> None:
    """A chip card pulled at the PIN prompt: the terminal finds it gone when it asks the card again."""
    mark = sim.panel.mark()
    click(window, "insert", card_index("visa_dda_online_pin"))
    sim.panel.wait_for("enter_pin", 20, mark)
    assert click(window, "fault", "pull_card") == "card pulled"
    assert sim.cards.card is None
    sim.panel.press(*"1234", "ENTER")
    screen = sim.panel.wait_for(("card_removed", "declined"), 30, mark)
    assert screen["screen"] == "card_removed" or screen["fields"].get("reason") == "card_removed", screen
    sim.panel.wait_for("idle", 30, mark)
    assert click(window, "fault", "pull_card") == "no card in the reader"


def test_power_cut_restarts_the_terminal_and_the_journal_recovers(window: SimulatorWindow,
                                                                    sim: Simulator) -> None:
    run = Run(sim)
    mark = run.insert(0)
    run.wait("enter_pin", mark)
    run.pin("1234")
    run.wait("lift_nozzle", mark)
    pump = sim.pump_line.pump(1)
    pump.lift(1)
    pump.dispense(1500, wait=False)
    assert until(lambda: pump.volume_cl >= 300, 20)
    old = sim.terminal.pid if sim.terminal else None
    assert click(window, "fault", "power_cut").startswith("power cut: terminal restarted")
    assert sim.terminal is not None and sim.terminal.pid != old
    assert window.strip is not None and window.strip.terminal_pid == sim.terminal.pid
    pump.dispense(0, timeout=30)
    pump.hang_up()
    run.remove()
    run.wait("thank_you", mark, timeout=40)
    rec = run.wait_synced(run.last_sale_id())
    assert rec.recovered and rec.synced and rec.volume_cl == 1500


def fixture_pans() -> set[str]:
    pans = {c.fields["pan"] for c in load_cards() if "pan" in c.fields}
    pans |= {load_profile(n)["card"]["pan"] for n in profile_names() if "card" in load_profile(n)}
    return pans


def test_log_pane_shows_no_card_number(window: SimulatorWindow, sim: Simulator) -> None:
    window.refresh()
    shown = "\n".join(window.log.lines)
    assert "sale synced" in shown                     # the pane does show the sales above
    for pan in fixture_pans():
        assert pan not in shown and pan[:6] + pan[-4:] not in shown.replace("*", "")
    assert "pin=" not in shown.lower().replace("pin=***", "")


def test_scenario_plays_step_by_step_then_at_speed(window: SimulatorWindow, sim: Simulator) -> None:
    player = window.player
    player.index = player.names.index("fleet-happy")
    window.scenario("step")
    assert until(lambda: player.state == "stepping", 10)
    assert player.step == "wait until the terminal is ready"
    window.draw(pygame.Surface(SIZE))
    window.handle_key(pygame.K_F5)
    assert until(lambda: player.state == "stepping" and player.step.startswith("insert card"), 30)
    assert player.step == f"insert card: {load_cards()[card_index('ACME fleet card (PIN 1234)')].name}"
    window.handle_key(pygame.K_F6)
    player.join(90)
    assert player.state == "ok", player.failures
    assert player.steps_done >= 4


def test_the_window_draws_every_pump(window: SimulatorWindow, sim: Simulator, tmp_path: Path) -> None:
    assert window.layout.pump_numbers == tuple(sorted(sim.pump_line.pumps)) == (1, 2, 3, 4)
    lifts = {b.arg for b in window.buttons if b.action == "lift"}
    assert lifts == {(p, n) for p, pump in sim.pump_line.pumps.items() for n in pump.grades}
    assert sim.pump_line.pump(1).state != PumpState.NOT_PROGRAMMED


def test_the_window_plays_tamper_open_on_the_pulser_site(sim: Simulator, display: None) -> None:
    """run_window's forecourt has the issue 17 site (pulser=True); the module's gets one here, started as
    the Simulator starts it (and stopped by its stop()). The player restarts the terminal for pumps 1, 3
    and 4 with the site's lines and the header; the lamps show the LEDs the terminal drives."""
    sim.site = PulserSite(flow_cl_per_s=400.0).start()
    window = SimulatorWindow(sim)
    assert window.site is not None and window.layout.pulser.keys() == {3, 4}
    player = window.player
    player.index = player.names.index("tamper-open")
    window.scenario("play")
    player.join(90)
    assert player.state == "ok", player.failures
    assert sim.terminal_pumps == (1, 3, 4) and "pump_lines" in sim.terminal_config.read_text()
    window.draw(pygame.Surface(SIZE))
    assert dict(window.site.lamps()) == {"Ready": True, "Fault": False, "Buzzer": False}
    mark = sim.panel.mark()
    assert click(window, "switch", "door") == "terminal door open"
    sim.panel.wait_for("out_of_service", 10, mark)
    sim.site.header.wait_output(PINS["led_fault"], True, 5)
    assert dict(window.site.lamps())["Fault"]
    mark = sim.panel.mark()
    assert click(window, "switch", "door") == "terminal door shut"
    sim.panel.wait_for("idle", 10, mark)
    click(window, "pulser_lift", 3)
    assert sim.site.node.nozzle_out and window.site.view(3).nozzle == "nozzle out"
    click(window, "pulser_hang", 3)
    assert not sim.site.node.nozzle_out
    player.index = player.names.index("fleet-happy")    # back to a terminal without the site's lines
    window.scenario("play")
    player.join(90)
    assert player.state == "ok", player.failures
    config = sim.terminal_config.read_text()
    assert sim.site is not None and "pump_lines" not in config and "[gpio]" in config    # the header stays
