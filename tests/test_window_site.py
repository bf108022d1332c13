"""The simulator window's issue 17 side: the pulser pumps' rows, the housing's switches and lamps, and the
scenario player's setup for the pulser scenarios.

A real PulserSite (the GPIO header on loopback TCP, the pump node on a pty, the GPIO meter) behind
tests/test_window.py's fake forecourt; a real GPIO client (drivers.gpio.remote, what the terminal uses)
plays the terminal's side of the header. The whole window on a real Simulator is tests/test_window_sim.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pygame
import pytest

from drivers.gpio.remote import RemotePins
from hostsim.pulser_site import GPIO_PUMP, NODE_PUMP, PINS, PulserSite
from hostsim.window import SIZE, SimulatorWindow
from hostsim.window_layout import MIDDLE, MIN_PUMP_ROW
from hostsim.window_player import ScenarioPlayer, Setup, reconfigure
from hostsim.world import load_cards
from tests.test_window import FakePump, FakeSim, assert_layout_fits, dummy_video, pixels  # noqa: F401


@pytest.fixture
def site() -> Iterator[PulserSite]:
    s = PulserSite().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def sim(tmp_path: Path, site: PulserSite) -> FakeSim:
    fake = FakeSim(tmp_path)
    for n in (2, 3, 4):                    # the DART line simulates every pump of the station, as the real
        fake.pump_line.pumps[n] = FakePump()
    fake.site = site                       # type: ignore[attr-defined]
    return fake


@pytest.fixture
def window(sim: FakeSim) -> SimulatorWindow:
    return SimulatorWindow(sim, profiles=load_cards())


@pytest.fixture
def terminal(site: PulserSite) -> Iterator[RemotePins]:
    """The terminal's end of the header."""
    pins = RemotePins("127.0.0.1", site.header.port).start()
    try:
        yield pins
    finally:
        pins.close()


def click(window: SimulatorWindow, action: str, arg: Any) -> str:
    hit = next(b for b in window.buttons if b.action == action and b.arg == arg)
    assert window.handle_click(hit.rect.center) == hit
    window.draw(pygame.Surface(SIZE))
    return window.status


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def labels(window: SimulatorWindow, pump: int) -> list[str]:
    row = window.layout.pump_row(pump)
    return [b.label for b in window.buttons if row.contains(b.rect)]


def test_pumps_3_and_4_get_pulser_rows_and_the_housing_its_switches(window: SimulatorWindow) -> None:
    assert window.layout.pump_numbers == (1, 2, 3, 4)
    assert window.layout.pulser == {NODE_PUMP: "pulser · pump node", GPIO_PUMP: "pulser · terminal GPIO"}
    assert labels(window, 1) == ["Lift nozzle 1", "Lift nozzle 2", "Squeeze", "Hang up"]
    assert labels(window, NODE_PUMP) == ["Lift nozzle", "Hang up", "Restart node"]
    assert labels(window, GPIO_PUMP) == ["Lift nozzle", "Hang up"]          # no trigger on a pulser pump
    assert {b.arg for b in window.buttons if b.action == "squeeze"} == {1, 2}
    assert [b.arg for b in window.buttons if b.action == "switch"] == ["door", "tamper", "paper_low"]
    assert window.layout.lamps is not None and window.layout.faults.contains(window.layout.lamps)
    assert_layout_fits(window)
    window.draw(pygame.Surface(SIZE))


def test_every_pump_stays_above_the_help_line_with_every_card(sim: FakeSim) -> None:
    w = SimulatorWindow(sim)                         # the picker's cards: the fixture's and every EMV profile
    assert_layout_fits(w)
    assert w.layout.pumps.bottom <= MIDDLE.bottom and w.layout.pump_h >= MIN_PUMP_ROW
    assert all(b.rect.h >= 36 for b in w.buttons if b.action in ("pulser_lift", "squeeze"))


def test_a_window_without_the_site_is_as_before(tmp_path: Path) -> None:
    w = SimulatorWindow(FakeSim(tmp_path), profiles=load_cards())
    assert w.site is None and w.layout.pulser == {} and w.layout.lamps is None
    assert not any(b.action in ("switch", "pulser_lift") for b in w.buttons)


def test_lift_hang_up_and_restart_the_pump_node(window: SimulatorWindow, site: PulserSite) -> None:
    node = site.node
    assert click(window, "pulser_lift", NODE_PUMP) == "pump 3: nozzle lifted"
    assert node.nozzle_out and node.core.nozzle_out
    assert window.site is not None and window.site.view(NODE_PUMP).nozzle == "nozzle out"
    assert window.site.view(NODE_PUMP).state == "idle (no K-factor yet)"     # no terminal gave it one
    click(window, "pulser_hang", NODE_PUMP)
    assert not node.nozzle_out and not node.core.nozzle_out
    assert click(window, "node_restart", NODE_PUMP).startswith("pump 3: the pump node restarted")
    assert node.restarts == 1 and window.log.lines[-1].endswith(window.status)


def test_pump_4_counts_the_meters_pulses_since_the_lift(window: SimulatorWindow, site: PulserSite,
                                                        terminal: RemotePins) -> None:
    relay = terminal.output(PINS["relay"])
    click(window, "pulser_lift", GPIO_PUMP)
    assert site.meter.nozzle_out and site.header.input_level(PINS["nozzle"])
    assert window.site is not None
    view = window.site.view(GPIO_PUMP)
    assert (view.state, view.volume_cl, view.nozzle) == ("relay off, slow relay off", 0, "nozzle out")
    relay.write(True)                      # the terminal opens the valve: the meter gives 2 pulses per 10 ms
    until(lambda: window.site is not None and window.site.view(GPIO_PUMP).volume_cl >= 30)
    assert window.site.view(GPIO_PUMP).state == "relay on, slow relay off"
    relay.write(False)
    terminal.sync()
    time.sleep(0.05)                                # the meter's last pulse under way, if any
    click(window, "pulser_hang", GPIO_PUMP)
    counted = window.site.view(GPIO_PUMP).volume_cl
    assert counted == site.meter.pulses >= 30       # K = 100: one pulse a centilitre
    assert window.site.view(GPIO_PUMP).litres == f"{counted // 100}.{counted % 100:02d} L"
    click(window, "pulser_lift", GPIO_PUMP)         # the next filling counts from its own lift
    assert window.site.view(GPIO_PUMP).volume_cl == 0


def test_housing_switches_drive_the_headers_inputs(window: SimulatorWindow, site: PulserSite,
                                                   terminal: RemotePins) -> None:
    door = terminal.input(PINS["door"], pull_up=False)
    assert not site.header.input_level(PINS["door"]) and not door.read()
    assert click(window, "switch", "door") == "terminal door open"
    assert site.header.input_level(PINS["door"])
    until(door.read)                                 # the terminal's end saw the edge
    assert window.site is not None and window.site.switch_label("door") == "Door: OPEN"
    assert click(window, "switch", "door") == "terminal door shut"
    until(lambda: not door.read())
    assert click(window, "switch", "tamper") == "terminal tamper tripped"
    assert click(window, "switch", "paper_low") == "terminal paper low"
    assert site.header.input_level(PINS["tamper"]) and site.header.input_level(PINS["paper_low"])
    assert window.log.lines[-1].endswith("terminal paper low")


def test_lamps_show_the_leds_the_terminal_drives(window: SimulatorWindow, terminal: RemotePins) -> None:
    assert window.site is not None and window.layout.lamps is not None
    assert window.site.lamps() == [("Ready", False), ("Fault", False), ("Buzzer", False)]
    surface = pygame.Surface(SIZE)
    window.draw(surface)
    dark = pixels(surface, window.layout.lamps)
    ready = terminal.output(PINS["led_ready"], initial=True)
    terminal.output(PINS["buzzer"])
    terminal.sync()
    assert window.site.lamps() == [("Ready", True), ("Fault", False), ("Buzzer", False)]
    window.draw(surface)
    assert pixels(surface, window.layout.lamps) != dark
    ready.write(False)
    terminal.sync()
    window.draw(surface)
    assert pixels(surface, window.layout.lamps) == dark


def test_space_bar_skips_a_pulser_pump(window: SimulatorWindow, sim: FakeSim) -> None:
    window.selected_pump = GPIO_PUMP
    window.handle_events([pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE, mod=0)])
    assert window.squeezing is None
    click(window, "squeeze", 2)
    assert window.squeezing == 2


class SetupSim:
    """What the player's setup touches of a Simulator, recording each restart of the terminal."""

    def __init__(self, site: Any) -> None:
        self.site, self.purse = site, None
        self.panel, self.pump_line = SimpleNamespace(listeners=[]), SimpleNamespace(pumps={})
        self.acquirer_rules = "rules"
        self.terminal_pumps: tuple[int, ...] = (1, 2, 3, 4)
        self.programs: tuple[str, ...] = ()
        self.restarts: list[tuple[tuple[int, ...], tuple[str, ...], bool]] = []

    def reconfigure_terminal(self, pumps: tuple[int, ...], *, site_lines: bool = True) -> None:
        self.terminal_pumps = pumps
        self.restarts.append((pumps, self.programs, site_lines))


def test_each_scenario_gets_the_terminal_it_runs_with(site: PulserSite) -> None:
    sim = SetupSim(site)
    assert Setup.wanted("tamper-open") == Setup((1, 3, 4), (), True)
    assert Setup.wanted("fleet-happy") == Setup((1,), (), False)
    reconfigure(sim, Setup.wanted("pulser-sale"))
    reconfigure(sim, Setup.wanted("fleet-happy"))      # pumps 3 and 4 back on the DART line
    reconfigure(sim, Setup.wanted("loyalty-redeem"))
    assert sim.restarts == [((1, 3, 4), (), True), ((1,), (), False),
                            ((1,), ("fleet", "voucher", "bank", "cash", "loyalty"), False)]
    assert sim.site is site


def test_the_player_lists_the_pulser_scenarios_and_says_what_a_scenario_lacks(site: PulserSite) -> None:
    sim = SetupSim(site)
    player = ScenarioPlayer(sim)
    assert {"pulser-sale", "pulser-node-restart", "tamper-open"} <= set(player.names)
    assert player.setup == Setup((1, 2, 3, 4), (), True)
    player.index = player.names.index("chip-wallet-load")
    player.play()
    player.join(5)
    assert player.state == "failed" and sim.restarts == []
    assert player.failures == [("RuntimeError: chip-wallet-load needs the chip-wallet SAM: play it headless "
                                "(forecourt sim --headless --scenario chip-wallet-load)")]
    sim.site = None
    player.index = player.names.index("tamper-open")
    player.play()
    player.join(5)
    assert player.state == "failed" and "needs the pulser site" in player.failures[0]
    assert (site.meter.flow, site.node.flow) == (200.0, 200.0)      # the site's flow as it was before
