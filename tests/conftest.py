"""One suite for simulation and the bench: --device-url picks the DART pump line the driver tests use.

The default, sim://, runs the driver's own simulated pumps on a pseudo-terminal, so the driver opens a tty
either way. On a bench: `pytest --device-url /dev/ttyUSB0 --device-pumps 1,2 tests/test_dart_*.py`
(any pyserial URL: socket://host:port, spy:///dev/ttyUSB0...). Tests that need the simulator (fault
injection, a simulated customer at the nozzle) are skipped there, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from contracts.errors import ConfigError
from drivers.devices import BACKENDS
from drivers.pump import DartController, open_pump_controller
from drivers.pump.sim_line import DartLineSimulator, simulated_line
from drivers.pump.simulator import SimPump
from drivers.url import DeviceUrl, parse_url

# the back office's fixtures (web_db, signed_in) for every test module
from tests.web_client import signed_in, web_db  # noqa: F401

SIM_FLOW = 5000.0   # cl/s of simulated pumps unless the URL says ?flow=: a 10 L preset takes 0.2 s


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (`main([...])`) points the root logger at the test's captured stderr,
    which closes with the test: put the handlers back, so a later test's threads never log into it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("forecourt devices")
    group.addoption("--device-url", default="sim://", metavar="URL",
                    help="DART pump line for the driver tests: sim:// (default; ?flow=cl/s) or a serial "
                         "URL of a bench line (/dev/ttyUSB0, socket://host:port)")
    group.addoption("--device-pumps", default="1", metavar="N,N",
                    help="pump numbers on that line (default 1); the first is the one tested")


# Tests that run the machine's one pcscd (hostsim.pcscd takes a machine-wide lock for it): whole-system
# scenarios and the PC/SC tests. Under pytest-xdist (`make test` runs two workers) they are one unit of work,
# run on one worker in turn while the other worker runs the rest: two workers waiting for one lock would
# only add waits. (xdist's own --dist loadgroup groups by a suffix of the node id, which pytest 9 no longer
# keeps; this scheduler groups by the node id itself.) The back office's browser tests join them: headless
# Chromium beside a running simulator on two cores starved its pump line once (the terminal saw "Pump
# unavailable" mid-fill), and in turn they cost the unit some 20 s.
PCSCD_GROUP = "pcscd"
PCSCD_FILES = ("tests/e2e/", "tests/test_pcsc_reader.py", "tests/test_pcsc_sam_slot.py",
               "tests/test_contactless_tag.py", "tests/test_window_sim.py", "tests/test_web_browser.py")


def needs_pcscd(nodeid: str) -> bool:
    return nodeid.startswith(PCSCD_FILES)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class PcscdApart(LoadScopeScheduling):
        """Each test its own unit of work, except the pcscd tests: one unit, the largest, sent first."""

        def _split_scope(self, nodeid: str) -> str:
            return PCSCD_GROUP if needs_pcscd(nodeid) else nodeid

    return PcscdApart(config, log)


def pytest_configure(config: pytest.Config) -> None:
    device(config)                     # a bad option stops the run at once
    config.addinivalue_line("markers", "simulator: needs the DART pump simulator (fault injection, a "
                                       "simulated customer); skipped when --device-url is a real line")


@dataclass
class PumpLine:
    """The line under test: `url` is what the driver opens (the simulator's pty, or the bench line)."""

    url: str
    pumps: tuple[int, ...]
    simulator: DartLineSimulator | None

    @property
    def pump(self) -> int:
        """The pump the single-pump tests drive."""
        return self.pumps[0]

    def open(self, **options: Any) -> DartController:
        return open_pump_controller(self.url, self.pumps, **options)


def device(config: pytest.Config) -> tuple[DeviceUrl, tuple[int, ...]]:
    """--device-url and --device-pumps, checked: a usage error (exit 4) rather than failing tests."""
    text, numbers = config.getoption("--device-url"), config.getoption("--device-pumps")
    try:
        url = parse_url(text, key="--device-url")
        pumps = tuple(int(n) for n in numbers.split(","))
    except (ConfigError, ValueError) as exc:
        raise pytest.UsageError(f"--device-url/--device-pumps: {exc}") from None
    if url.scheme not in BACKENDS["pump_line"] or not all(1 <= n <= 32 for n in pumps):
        raise pytest.UsageError(f"--device-url {text!r} is no pump line URL, or a pump is not 1..32")
    if url.scheme == "sim" and 1 not in pumps:
        raise pytest.UsageError("--device-pumps must include 1 on sim://: simulator-only tests drive pump 1")
    return url, pumps


def on_simulator(config: pytest.Config) -> bool:
    return device(config)[0].scheme == "sim"


def needs_simulator(config: pytest.Config, why: str) -> None:
    if not on_simulator(config):
        url = config.getoption("--device-url")
        pytest.skip(f"{why}: only the simulator can do that (--device-url {url})")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("simulator") is not None:
        needs_simulator(item.config, "builds its own simulated line")


@pytest.fixture
def pump_line(request: pytest.FixtureRequest) -> Iterator[PumpLine]:
    url, pumps = device(request.config)
    if url.scheme != "sim":
        yield PumpLine(url.raw, pumps, None)
        return
    with simulated_line(url, pumps, flow_cl_per_s=SIM_FLOW) as sim:
        yield PumpLine(sim.port, pumps, sim)


@pytest.fixture
def simulator(request: pytest.FixtureRequest, pump_line: PumpLine) -> DartLineSimulator:
    """The simulated line; the test is skipped on a bench line."""
    needs_simulator(request.config, "fault injection or a simulated customer")
    assert pump_line.simulator is not None
    return pump_line.simulator


@pytest.fixture
def customer(simulator: DartLineSimulator, pump_line: PumpLine) -> SimPump:
    """The simulated pump under test: lift(), dispense(), hang_up() play the customer."""
    return simulator.pump(pump_line.pump)
