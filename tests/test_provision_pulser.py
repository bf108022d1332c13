"""provisioning.pulser: a pulser pump's K-factor from a proving measure, against a simulated pump node whose
meter reads 2 % high (nodesim:// meter_k=) and a pulser dispenser on simulated GPIO pins driven by the test
as a technician would fill the measure (the CLI end to end)."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import ConfigError, PumpTimeout
from contracts.pump import PumpState
from drivers.gpio.sim import shared
from drivers.pulser.setup import CALIBRATION, calibrated
from firmware.config import TerminalConfig, load_config
from firmware.terminal.hardware import open_pumps
from forecourtcli.main import main
from provisioning.pulser import (
    Calibration,
    CalibrationRefused,
    Fill,
    check_change,
    new_k_milli,
    parse_litres,
    record,
)

BASE = """
[terminal]
id = "T-0001"
station = "ST-001"
state_dir = "."

[devices]
card_reader = "memory://"
pump_line = "sim://?flow=2000"
pumps = [1, 3]
pump_lines = ["{line}"]
{more}
"""
NODE = "nodesim://?pumps=3&k=100&meter_k={meter_k}&flow=2000"
NOW = dt.datetime(2026, 12, 2, 10, 30, tzinfo=dt.UTC)


def config(tmp_path: Path, line: str, more: str = "") -> TerminalConfig:
    path = tmp_path / "terminal.toml"
    path.write_text(BASE.format(line=line, more=more))
    return load_config(path)


def test_the_arithmetic() -> None:
    assert new_k_milli(2000, 19_610) == 101_989            # 101.9888... pulses per litre, rounded
    assert new_k_milli(2000, 20_000) == 100_000
    assert new_k_milli(1, 3) == 333_333                    # half up: 333333.33
    assert new_k_milli(2, 3) == 666_667
    assert parse_litres("19.61") == parse_litres("19,610") == 19_610
    for bad in ("", "abc", "0", "-1", "19.6105", "nan", "inf", "10000.001"):
        with pytest.raises(ConfigError):
            parse_litres(bad)
    assert check_change(100_000, 105_000) == 5.0            # the bound itself is allowed
    assert check_change(100_000, 95_000) == -5.0
    for off in (105_001, 94_999):
        with pytest.raises(CalibrationRefused, match="needs repair"):
            check_change(100_000, off)
    with pytest.raises(CalibrationRefused, match="no pulses"):
        new_k_milli(0, 20_000)


def test_a_meter_reading_two_percent_high_is_calibrated(tmp_path: Path) -> None:
    cfg = config(tmp_path, NODE.format(meter_k=102))
    said: list[str] = []

    def technician(text: str) -> None:          # lifts the nozzle when told to
        said.append(text)
        if "lift the nozzle" in text:
            cal.line.sim.lift()

    with Calibration(cfg, 3) as cal:
        assert cal.k_milli == 100_000
        assert cal.prepare() == 1000            # no signed configuration yet: the nominal price
        fill = cal.fill(20, wait=20, say=technician)
        st = cal.line.status(3)
        cal.line.sim.hang()
    # the preset stops at 2000 pulses: 20.00 L to the terminal, 19.61 L in the can
    assert fill == Fill(pump=3, pulses=2000, volume_cl=2000, k_milli=100_000, preset_reached=True)
    assert st.state.value == "reset"            # left idle: the terminal finds no filling to settle
    assert any("2000 pulses" in s for s in said)

    outcome = record(cfg, fill, parse_litres("19.61"), by="  A.  Tech ", now=NOW)
    assert (outcome.old_k, outcome.new_k, round(outcome.deviation, 2)) == (100_000, 101_989, 1.99)
    assert outcome.lines()[0] == "pump 3: K-factor 100.000 -> 101.989 pulses per litre (+1.99 %)"
    kept = json.loads((cfg.state_dir / CALIBRATION).read_text())["3"]
    assert (kept["k_milli"], kept["at"], kept["by"]) == (101_989, "2026-12-02T10:30:00Z", "A. Tech")
    assert calibrated(cfg.state_dir, 3, 100_000) == 101_989          # what the next start reads


def test_a_filling_that_never_ends_in_time_leaves_the_pump_stopped(tmp_path: Path) -> None:
    cfg = config(tmp_path, NODE.format(meter_k=100))
    with Calibration(cfg, 3) as cal:
        cal.prepare()
        with pytest.raises(PumpTimeout):
            cal.fill(20, wait=0.3, say=lambda _: None)          # nobody lifts the nozzle
        st = cal.line.wait_status(3, lambda s: s.state is not PumpState.AUTHORIZED, 2)
    assert st.state is PumpState.FILLING_COMPLETED and st.volume_cl == 0
    assert not (cfg.state_dir / CALIBRATION).exists()


def test_a_meter_too_far_off_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    cfg = config(tmp_path, NODE.format(meter_k=100))
    fill = Fill(pump=3, pulses=2000, volume_cl=2000, k_milli=100_000, preset_reached=True)
    with pytest.raises(CalibrationRefused, match=r"\+10\.01 %"):
        record(cfg, fill, parse_litres("18.18"), by="A. Tech", now=NOW)     # 110 pulses per litre
    with pytest.raises(ConfigError, match="--by"):
        record(cfg, fill, parse_litres("19.61"), by="  ", now=NOW)
    assert not (cfg.state_dir / CALIBRATION).exists()


def test_a_dart_pump_or_an_unknown_pump_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, NODE.format(meter_k=100))
    with pytest.raises(ConfigError, match="not a pulser pump"):
        Calibration(cfg, 1).open()
    with pytest.raises(ConfigError, match="not one of devices.pumps"):
        Calibration(cfg, 2)


def test_a_pump_with_a_sale_still_open_is_not_calibrated(tmp_path: Path) -> None:
    """The open sale would settle from the totals the calibration fill moves: the technician is sent to let
    the terminal settle it first; another pump's open sale is no obstacle."""
    from firmware.sale.journal import Journal
    from firmware.sale.machine import SaleState
    from firmware.sale.record import Preset

    cfg = config(tmp_path, NODE.format(meter_k=100))
    journal = Journal(cfg.state_dir / "journal.db")
    for sale_id, pump in (("s1", 1), ("s3", 3)):
        journal.begin_sale(sale_id, pump, "707700******0019", "t" * 32, program="fleet")
        journal.transition(sale_id, SaleState.AUTHORIZING)
        journal.transition(sale_id, SaleState.APPROVED, preset=Preset.volume(2000), nozzles=[1])
        journal.transition(sale_id, SaleState.PUMP_AUTHORIZED, totals_before={1: (0, 0)})
    journal.transition("s3", SaleState.COMPLETED, nozzle=1, volume_cl=0, amount_cents=0)
    journal.close()
    cal = Calibration(cfg, 3).open()             # pump 1's open sale is no obstacle
    cal.close()
    journal = Journal(cfg.state_dir / "journal.db")
    journal.begin_sale("s4", 3, "707700******0019", "t" * 32, program="fleet")
    journal.transition("s4", SaleState.AUTHORIZING)
    journal.transition("s4", SaleState.APPROVED, preset=Preset.volume(2000), nozzles=[1])
    journal.close()
    with pytest.raises(CalibrationRefused, match="sale still open"):
        Calibration(cfg, 3).open()


class Dispenser:
    """A pulser dispenser on simulated pins as a technician works it: lifts the nozzle (hangs it up and
    lifts it again until the pump runs), the meter gives pulses while the relay is on; the nozzle is hung
    up when the relay stops."""

    PULSE, RELAY, NOZZLE = 17, 27, 23

    def __init__(self, name: str) -> None:
        self.pins = shared(name)
        self.pins.drive(self.PULSE, False)
        self.pins.drive(self.NOZZLE, False)
        self.pulses = 0
        self.running = threading.Event()
        self.done = threading.Event()
        self.pins.on_output(self._on_output)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_output(self, number: int, level: bool) -> None:
        if number == self.RELAY and level:
            self.running.set()

    def _run(self) -> None:
        while not self.done.is_set():
            self.pins.drive(self.NOZZLE, True)
            if self.running.wait(0.2):
                break
            self.pins.drive(self.NOZZLE, False)
            self.done.wait(0.1)
        while not self.done.is_set() and self.pins.level(self.RELAY):
            self.pins.drive(self.PULSE, True)
            self.pins.drive(self.PULSE, False)
            self.pulses += 1
        self.pins.drive(self.NOZZLE, False)


def _run_cli(name: str, argv: list[str]) -> tuple[int, int]:
    """The CLI run while a dispenser on the pins `name` serves the filling: (exit code, pulses given)."""
    dispenser = Dispenser(name)
    dispenser.thread.start()
    try:
        code = main(argv)
    finally:
        dispenser.done.set()
        dispenser.thread.join(5)
    return code, dispenser.pulses


def test_the_cli_calibrates_a_pulser_on_the_terminals_gpio(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"calibrate-{uuid.uuid4().hex[:8]}"
    line = "pulser://?pumps=3&pulse=17&relay=27&nozzle=23&k=100"
    cfg = config(tmp_path, line, more=f'gpio = "sim://{name}"')
    argv = ["provision", "pulser-calibrate", "--config", str(tmp_path / "terminal.toml"), "--pump", "3",
            "--litres", "20", "--by", "A. Tech", "--wait", "20", "--measured"]
    assert _run_cli(name, [*argv, "19.61"]) == (0, 2000)
    out = capsys.readouterr()
    assert "is no sale: it is recorded nowhere" in out.out
    assert "K-factor 100.000 -> 101.989 pulses per litre (+1.99 %)" in out.out
    # the next start runs at the new K: 20 L are now 2040 pulses; 18 L measured would be +11 %: refused
    gpio: Any = shared(name)
    pumps: Any = open_pumps(cfg.devices, cfg.state_dir, gpio, cfg.gpio)
    try:
        assert [line.k_milli[3] for line in pumps.lines() if hasattr(line, "meter")] == [101_989]
    finally:
        pumps.close()
        gpio.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("18\n"))             # typed when asked
    assert _run_cli(name, argv[:-1]) == (1, 2040)
    out = capsys.readouterr()
    assert "litres in the proving measure: " in out.out
    assert "needs repair, not a new K; nothing was changed" in out.err
    assert calibrated(cfg.state_dir, 3, 100_000) == 101_989
