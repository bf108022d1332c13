"""firmware.terminal.hardware: every pump on the line its URL names (DART and pulser lines behind one
controller), the GPIO outputs driven to their safe level after a terminal died, the [gpio] configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts.errors import ConfigError, PumpError
from contracts.pump import PumpState
from drivers.devices import open_device
from drivers.pump.lines import PumpLines
from firmware.config import TerminalConfig, load_config
from firmware.terminal.hardware import line_pumps, open_pumps, outputs_off
from hostsim.gpio_server import GpioServer

BASE = """
[terminal]
id = "T-0001"
station = "ST-001"
state_dir = "."

[devices]
card_reader = "memory://"
pump_line = "sim://?flow=2000"
pumps = {pumps}
{more}
"""


def config(tmp_path: Path, pumps: str = "[1, 3]", more: str = "", gpio: str = "") -> TerminalConfig:
    path = tmp_path / "terminal.toml"
    path.write_text(BASE.format(pumps=pumps, more=more) + gpio)
    return load_config(path)


def test_pumps_go_to_the_line_their_url_names(tmp_path: Path) -> None:
    cfg = config(tmp_path, more='pump_lines = ["nodesim://?pumps=3&k=100&flow=2000"]')
    assert line_pumps(cfg.devices) == {"nodesim://?pumps=3&k=100&flow=2000": (3,)}
    pumps = open_pumps(cfg.devices, tmp_path)
    try:
        assert isinstance(pumps, PumpLines) and len(pumps.lines()) == 2
        dart = pumps.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5)
        node = pumps.wait_status(3, lambda s: s.state is not PumpState.OFFLINE, 5)
        assert dart.state is PumpState.NOT_PROGRAMMED and node.state is PumpState.NOT_PROGRAMMED
        pumps.set_prices(3, {1: 1659})
        assert pumps.wait_status(3, lambda s: s.state is PumpState.RESET, 5).price_milli == 1659
        assert pumps.totals(3, 1).volume_cl == 0
        with pytest.raises(PumpError):
            pumps.status(2)                       # on no line
    finally:
        pumps.close()


@pytest.mark.parametrize("lines", [
    '["nodesim://?pumps=5&k=100"]',                                  # not one of devices.pumps
    '["nodesim://?k=100"]',                                          # names no pump
    '["nodesim://?pumps=3&k=100", "nodesim://?pumps=3&k=100&x=1"]',  # pump 3 twice
])
def test_a_pump_line_must_name_pumps_of_the_terminal_once(tmp_path: Path, lines: str) -> None:
    cfg = config(tmp_path, more=f"pump_lines = {lines}")
    with pytest.raises(ConfigError, match="pump_lines"):
        line_pumps(cfg.devices)


def test_gpio_pins_must_be_distinct_and_need_a_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="distinct BCM"):
        config(tmp_path, more='gpio = "sim://"', gpio="[gpio]\ndoor = 5\ntamper = 5\n")
    with pytest.raises(ConfigError, match="devices.gpio"):
        config(tmp_path, gpio="[gpio]\ndoor = 5\n")
    with pytest.raises(ConfigError, match="active_low"):
        config(tmp_path, more='gpio = "sim://"', gpio='[gpio]\ndoor = 5\nactive_low = ["dor"]\n')


def test_outputs_off_closes_the_valve_a_killed_terminal_left_open(tmp_path: Path) -> None:
    header = GpioServer().start()
    try:
        url = f"tcp://127.0.0.1:{header.port}"
        dead = open_device("gpio", url)           # the terminal that is about to die, valve open
        relay = dead.output(27, initial=False)
        relay.write(True)
        header.wait_output(27, True, 5)
        header.drop()                             # killed: nobody closes its pins
        assert header.level(27) is True
        cfg = config(tmp_path, more=f'gpio = "{url}"\npump_lines = ["pulser://?pumps=3&k=100&pulse=17'
                                    f'&relay=27&slow_relay=22&nozzle=23&active_low=slow_relay"]',
                     gpio="[gpio]\nled_ready = 13\nbuzzer = 26\n")
        assert outputs_off(cfg) == [13, 22, 26, 27]
        assert header.level(27) is False and header.level(13) is False
        assert header.level(22) is True               # active low: off is high
    finally:
        header.stop()


def test_a_dart_line_with_transmit_enable_raises_de_only_while_it_sends(tmp_path: Path) -> None:
    """[gpio] tx_enable wraps the DART port: the pumps answer (DE dropped in time) and DE rests low."""
    from drivers.gpio.sim import shared

    pins = shared("tx-enable-test")
    edges: list[bool] = []
    cfg = config(tmp_path, pumps="[1]", more='gpio = "sim://tx-enable-test"', gpio="[gpio]\ntx_enable = 18\n")
    pumps = open_pumps(cfg.devices, tmp_path, open_device("gpio", cfg.devices.gpio), cfg.gpio)
    try:
        pins.on_output(lambda number, level: edges.append(level) if number == 18 else None)
        st = pumps.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5)
        assert st.state is PumpState.NOT_PROGRAMMED
    finally:
        pumps.close()
    assert edges.count(True) >= 3 and pins.level(18) is False
    pins.close()


def test_the_watchdog_watches_every_pump_lines_threads(tmp_path: Path) -> None:
    """pump_threads gives the DART line's and the pulser line's polling threads and the GPIO pulser's tick
    thread; the terminal's Liveness feeds systemd only while each lives."""
    from drivers.gpio.sim import shared
    from firmware.terminal.hardware import pump_progress, pump_threads
    from firmware.terminal.liveness import Liveness

    pins = shared("watchdog-test")
    cfg = config(tmp_path, pumps="[1, 4]", more='gpio = "sim://watchdog-test"\npump_lines = ["pulser://?pumps=4'
                 '&k=100&pulse=17&relay=27&nozzle=23"]')
    pumps = open_pumps(cfg.devices, tmp_path, open_device("gpio", cfg.devices.gpio), cfg.gpio)
    sent: list[str] = []
    live = Liveness(interval=10.0, send=lambda state: sent.append(state) is None)
    try:
        threads = pump_threads(pumps)
        assert len(threads) == 3 and all(t().is_alive() for t in threads)
        for i, thread in enumerate(threads):
            live.watch(f"pump-line-{i + 1}", thread)
        live.beat("main")
        assert live.feed() and sent[-1] == "WATCHDOG=1"
        rounds = pump_progress(pumps)
        assert len(rounds) == 3
        first = [r() for r in rounds]
        time.sleep(0.2)
        assert all(r() > n for r, n in zip(rounds, first))        # every line and the unit turn
        pumps.lines()[1].close()                  # the pulser line's threads end
        assert not live.feed()
        assert set(live.stuck()) == {"pump-line-2", "pump-line-3"}
    finally:
        pumps.close()
        pins.close()
