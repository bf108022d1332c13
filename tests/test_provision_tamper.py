"""provisioning.tamper: `forecourt provision tamper-clear` against a real journal, with the tamper switch
on simulated pins, tripped and shut; a running terminal's cabinet (firmware.terminal.cabinet) takes cards
again once the latch is cleared."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from contracts.errors import ConfigError
from drivers.gpio.devices import Switch
from drivers.gpio.sim import SimPins, shared
from firmware.config import TerminalConfig, load_config
from firmware.sale.journal import Journal
from firmware.terminal.cabinet import TAMPER_LATCH, Cabinet
from forecourtcli.main import main
from provisioning.tamper import CLEARED, TamperTripped, clear_tamper

TAMPER = 6
BASE = """
[terminal]
id = "T-0001"
station = "ST-001"
state_dir = "."

[devices]
card_reader = "memory://"
pump_line = "sim://"
{devices}
{gpio}
"""
NOW = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)


def config(tmp_path: Path, name: str | None) -> TerminalConfig:
    devices, gpio = (f'gpio = "sim://{name}"', f"[gpio]\ntamper = {TAMPER}\n") if name else ("", "")
    path = tmp_path / "terminal.toml"
    path.write_text(BASE.format(devices=devices, gpio=gpio))
    return load_config(path)


def latched_journal(cfg: TerminalConfig, at: str = "2026-12-01T22:15:00Z") -> None:
    journal = Journal(cfg.state_dir / "journal.db")
    try:
        journal.put(TAMPER_LATCH, at)
    finally:
        journal.close()


def value(cfg: TerminalConfig, key: str) -> str | None:
    journal = Journal(cfg.state_dir / "journal.db")
    try:
        return journal.get_value(key)
    finally:
        journal.close()


def test_refused_while_the_switch_is_tripped_then_cleared_once_the_housing_is_shut(tmp_path: Path) -> None:
    name = f"tamper-{uuid.uuid4().hex[:8]}"
    cfg = config(tmp_path, name)
    latched_journal(cfg)
    pins = shared(name)
    pins.drive(TAMPER, True)                       # active high: the housing is open
    with pytest.raises(TamperTripped, match="still tripped"):
        clear_tamper(cfg, by="A. Tech", now=NOW)
    assert value(cfg, TAMPER_LATCH) == "2026-12-01T22:15:00Z" and value(cfg, CLEARED) is None
    assert pins.claimed() == []                    # the pin was released again
    pins.drive(TAMPER, False)
    done = clear_tamper(cfg, by=" A.  Tech ", now=NOW)
    assert done.lines()[0] == ("tamper latch of 2026-12-01T22:15:00Z cleared at 2026-12-02T11:00:00Z "
                               "by A. Tech")
    assert value(cfg, TAMPER_LATCH) is None
    assert json.loads(value(cfg, CLEARED) or "") == {"at": "2026-12-02T11:00:00Z", "by": "A. Tech",
                                                     "latched_at": "2026-12-01T22:15:00Z"}
    assert clear_tamper(cfg, by="A. Tech", now=NOW).lines() == ["no tamper latch set: nothing to clear"]


def test_a_switch_the_tool_cannot_read_clears_nothing(tmp_path: Path) -> None:
    name = f"tamper-{uuid.uuid4().hex[:8]}"
    cfg = config(tmp_path, name)
    latched_journal(cfg)
    pins = shared(name)
    pins.drive(TAMPER, False)
    holder = pins.input(TAMPER)                    # another user holds the pin (lgpio: a running terminal)
    try:
        with pytest.raises(TamperTripped, match="cannot read the tamper switch"):
            clear_tamper(cfg, by="A. Tech", now=NOW)
    finally:
        pins.close()
    assert holder.read() is False and value(cfg, TAMPER_LATCH) is not None


def test_without_a_switch_or_a_journal(tmp_path: Path) -> None:
    cfg = config(tmp_path, None)
    assert clear_tamper(cfg, by="A. Tech").latched_at is None
    assert not (cfg.state_dir / "journal.db").exists()             # no journal made by the tool
    latched_journal(cfg)
    assert clear_tamper(cfg, by="A. Tech").latched_at == "2026-12-01T22:15:00Z"
    with pytest.raises(ConfigError, match="--by"):
        clear_tamper(cfg, by="   ")


def test_the_running_terminal_takes_cards_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal's own header and the tool's are two views of one switch (two processes on a Pi)."""
    name = f"tamper-{uuid.uuid4().hex[:8]}"
    cfg = config(tmp_path, name)
    terminal_pins, tool_pins = SimPins(), shared(name)

    def housing(opened: bool) -> None:
        terminal_pins.drive(TAMPER, opened)
        tool_pins.drive(TAMPER, opened)

    housing(False)
    events: list[tuple[str, str, str]] = []
    journal = Journal(cfg.state_dir / "journal.db")
    cabinet = Cabinet(journal, lambda *e: events.append(e),
                      tamper=Switch(terminal_pins, TAMPER, name="tamper", active_low=False, bounce_ms=0))
    argv = ["provision", "tamper-clear", "--config", str(tmp_path / "terminal.toml"), "--by", "A. Tech"]
    try:
        cabinet.start()
        assert cabinet.out_of_service() is None
        housing(True)
        assert cabinet.out_of_service() == "tamper" and events[0][:2] == ("alarm", "tamper")
        assert main(argv) == 1
        assert "still tripped" in capsys.readouterr().err
        housing(False)
        assert cabinet.out_of_service() == "tamper"              # latched: shutting it is not enough
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "cleared at" in out and "by A. Tech" in out
        assert cabinet.out_of_service() is None                  # the next turn of the loop sells again
    finally:
        cabinet.close()
        journal.close()
        terminal_pins.close()
