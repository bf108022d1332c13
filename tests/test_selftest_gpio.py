"""provisioning.selftest on the device: every pump line of the configuration checked (a pulser dispenser on
the terminal's GPIO beside the DART line), and the GPIO housing: switches read (door open, housing open,
paper low fail; a tamper latch fails until cleared), LEDs and buzzer toggled once, the transmit-enable pin
claimed and left off; all on simulated pins."""

from __future__ import annotations

import uuid
from pathlib import Path

from drivers.gpio.sim import SimPins, shared
from firmware.config import TerminalConfig, load_config
from firmware.sale.journal import Journal
from firmware.terminal.cabinet import TAMPER_LATCH
from hostsim.services import free_port
from provisioning.selftest import CheckResult, check_gpio, check_pumps, failed, run_selftest

BASE = """
[terminal]
id = "T-0001"
station = "ST-001"
state_dir = "."

[mqtt]
port = {broker}

[devices]
card_reader = "memory://"
printer = "memory://"
pump_line = "sim://"
pumps = [1, 3]
pump_lines = ["pulser://?pumps=3&pulse=17&relay=27&nozzle=23&k=100"]
gpio = "{gpio}"

[gpio]
door = 5
tamper = 6
paper_low = 12
led_ready = 13
led_fault = 19
buzzer = 26
tx_enable = 16
"""
INPUTS = {"door": 5, "tamper": 6, "paper_low": 12, "nozzle": 23, "pulse": 17}


def setup(tmp_path: Path, gpio: str | None = None) -> tuple[TerminalConfig, SimPins, list[tuple[int, bool]]]:
    """A configuration on fresh shared pins, every input at rest (low: shut, nozzle hung), and the list
    every output change lands in."""
    name = f"selftest-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "terminal.toml"
    path.write_text(BASE.format(broker=free_port(), gpio=gpio or f"sim://{name}"))
    pins = shared(name)
    for number in INPUTS.values():
        pins.drive(number, False)
    changes: list[tuple[int, bool]] = []
    pins.on_output(lambda number, level: changes.append((number, level)))
    return load_config(path), pins, changes


def rows(results: list[CheckResult]) -> dict[str, tuple[bool, str]]:
    return {r.device: (r.passed, r.detail) for r in results}


def test_a_housing_at_rest_passes_and_every_output_was_toggled(tmp_path: Path) -> None:
    cfg, pins, changes = setup(tmp_path)
    results = check_gpio(cfg)
    assert [r.device for r in results] == ["gpio", "door", "tamper", "paper sensor", "led ready", "led fault",
                                           "buzzer", "tx enable"]
    assert not failed(results), results
    got = rows(results)
    assert got["door"] == (True, "GPIO5: door shut") and got["led ready"] == (True, "GPIO13: lit once")
    assert got["buzzer"] == (True, "GPIO26: beeped once")
    assert got["tx enable"] == (True, "GPIO16: claimed, driver off (receiving)")
    for lamp in (13, 19, 26):
        assert [c for c in changes if c[0] == lamp] == [(lamp, False), (lamp, True), (lamp, False)]
    assert [c for c in changes if c[0] == 16] == [(16, False)]       # never driven on
    assert pins.claimed() == []                                     # every pin released again


def test_an_open_door_an_open_housing_and_low_paper_fail(tmp_path: Path) -> None:
    cfg, pins, _ = setup(tmp_path)
    for name in ("door", "tamper", "paper_low"):
        pins.drive(INPUTS[name], True)
    got = rows(check_gpio(cfg))
    assert got["door"] == (False, "GPIO5: door open")
    assert got["tamper"] == (False, "GPIO6: tamper switch tripped: housing open")
    assert got["paper sensor"] == (False, "GPIO12: paper low")
    assert got["led ready"][0] and got["tx enable"][0]


def test_a_tamper_latch_fails_until_cleared(tmp_path: Path) -> None:
    cfg, _, _ = setup(tmp_path)
    journal = Journal(cfg.state_dir / "journal.db")
    try:
        journal.put(TAMPER_LATCH, "2026-12-01T22:15:00Z")
    finally:
        journal.close()
    passed, detail = rows(check_gpio(cfg))["tamper"]
    assert not passed
    assert detail == ("GPIO6: housing shut, but latched since 2026-12-01T22:15:00Z: inspect, then forecourt "
                      "provision tamper-clear")


def test_every_pump_line_is_checked_the_pulser_one_on_the_gpio(tmp_path: Path) -> None:
    cfg, pins, _ = setup(tmp_path)
    got = rows(check_pumps(cfg, timeout=5))
    assert got["pump 1"][0] and got["pump 1"][1].startswith("answers on sim://: "), got
    assert got["pump 3"][0] and got["pump 3"][1].startswith("answers on pulser://?pumps=3"), got
    assert pins.claimed() == [] and pins.level(27) is False           # relay released at its safe level


def test_a_gpio_header_out_of_reach_fails_the_gpio_row_and_the_pulser_pump(tmp_path: Path) -> None:
    cfg, _, _ = setup(tmp_path, gpio=f"tcp://127.0.0.1:{free_port()}?timeout=0.3")
    results = run_selftest(cfg, timeout=1)
    got = rows(results)
    assert [r.device for r in results] == ["card reader", "pump 1", "pump 3", "printer", "gpio", "broker"]
    assert got["pump 1"][0] and got["printer"][0] and got["card reader"][0]
    assert not got["gpio"][0] and got["gpio"][1].startswith("tcp://127.0.0.1:")
    assert not got["pump 3"][0] and "needs devices.gpio" in got["pump 3"][1]
    assert failed(results)
