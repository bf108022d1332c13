"""drivers.devices: every device opened by URL through one table."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from contracts.errors import ConfigError, MissingComponent
from contracts.pump import PumpState
from drivers.acquirer import AcquirerLink, open_acquirer
from drivers.cardreader import MemoryReader, open_reader
from drivers.devices import BACKENDS, CONFIG_KEYS, open_device
from drivers.msr import open_msr
from drivers.msr.reader import MemoryMagstripeReader
from drivers.pump import DartController, open_pump_controller
from drivers.pump.sim_line import SimulatedDartController


def test_every_table_entry_names_a_factory() -> None:
    assert set(CONFIG_KEYS) == set(BACKENDS)
    for kind, schemes in BACKENDS.items():
        for scheme, target in schemes.items():
            module, _, name = target.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), (kind, scheme)


def test_unknown_kind_and_scheme_are_config_errors_listing_what_is_known() -> None:
    with pytest.raises(ConfigError) as err:
        open_device("coffee_machine", "tcp://127.0.0.1:1")
    assert "pump_line" in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_device("panel", "vnc://127.0.0.1:5900")
    assert err.value.context["key"] == "devices.panel"
    assert "pygame://" in str(err.value) and "tcp://" in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_device("printer", "/dev/usb/lp0", key="station.printer")
    assert err.value.context["key"] == "station.printer" and "file://" in str(err.value)


def test_missing_hardware_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "drivers.panel.pygame_panel", raising=False)
    monkeypatch.setitem(sys.modules, "pygame", None)      # import pygame now fails as if not installed
    with pytest.raises(MissingComponent) as err:
        open_device("panel", "pygame://")
    assert "pip install pygame" in str(err.value) and err.value.context["key"] == "devices.panel"


def test_a_new_backend_is_a_module_and_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bench_printer.py").write_text(
        "def open_bench(url, **options):\n    return ('bench', url.host, url.port, options)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(BACKENDS["printer"], "bench", "bench_printer:open_bench")
    assert open_device("printer", "bench://lab:4000", width=42) == ("bench", "lab", 4000, {"width": 42})


def test_simple_backends() -> None:
    assert isinstance(open_reader("memory://"), MemoryReader)
    assert open_msr("") is None and open_msr("none://") is None
    assert isinstance(open_msr("memory://"), MemoryMagstripeReader)
    link = open_acquirer("tcp://127.0.0.1:1", response_timeout=3.0)   # connects on the first exchange
    assert isinstance(link, AcquirerLink) and (link.host, link.port, link.response_timeout) == (
        "127.0.0.1", 1, 3.0)
    with pytest.raises(ConfigError) as err:
        open_acquirer("tcp://acquirer.example")
    assert err.value.context["key"] == "bank.acquirer"


def test_sim_url_opens_simulated_pumps() -> None:
    with open_pump_controller("sim://?flow=2000", [1, 2], reply_timeout=0.2) as ctl:
        assert isinstance(ctl, SimulatedDartController)
        for n in (1, 2):
            ctl.wait_status(n, lambda s: s.state is PumpState.NOT_PROGRAMMED, 3.0)
        ctl.set_prices(2, {1: 1659})
        assert ctl.status(2).state is PumpState.RESET
        assert ctl.simulator.pump(2).prices[1] == 1659 and ctl.simulator.pump(2).flow_cl_per_s == 2000
    with pytest.raises(RuntimeError):
        assert not ctl.simulator.port                     # the line stopped with the controller


def test_serial_url_opens_a_dart_line() -> None:
    with open_pump_controller("loop://", [1], reply_timeout=0.02) as ctl:   # our own echo, no pump
        assert type(ctl) is DartController and ctl.url == "loop://"
        assert ctl.status(1).state is PumpState.OFFLINE
    with pytest.raises(ConfigError) as err:
        open_pump_controller("sim://?flow=fast", [1])
    assert err.value.context["key"] == "devices.pump_line"
