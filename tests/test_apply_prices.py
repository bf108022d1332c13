"""Prices reach the pumps: a pump busy with a sale, or one whose update got no answer, is listed for the
retry serve() makes every second, on a real DART controller over the simulated line."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from contracts.pump import PumpState
from drivers.devices import open_device
from drivers.pump.sim_line import SimulatedDartController
from firmware.station import NozzlePrice, Station
from firmware.terminal.serve import apply_prices

STATION = Station("S", prices=(NozzlePrice(1, 1, "B7", "Diesel", 1719),
                               NozzlePrice(1, 2, "E5", "Super", 1859)))
HOST = SimpleNamespace(station=STATION)


@pytest.fixture
def pumps() -> Iterator[SimulatedDartController]:
    ctl = open_device("pump_line", "sim://?flow=2000", pumps=(1,), reply_timeout=0.05, command_timeout=1.0)
    try:
        ctl.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5.0)
        yield ctl
    finally:
        ctl.close()


def test_prices_go_in_and_nothing_is_left(pumps: SimulatedDartController) -> None:
    assert apply_prices(HOST, pumps, (1,)) == set()  # type: ignore[arg-type]
    assert pumps.simulator.pump(1).prices == {1: 1719, 2: 1859}


def test_an_update_without_an_answer_is_retried_until_it_goes_in(pumps: SimulatedDartController) -> None:
    sim = pumps.simulator.pump(1)
    with sim.lock:
        sim.faults.mute = 1000                       # the pump hears nothing for a while
    assert apply_prices(HOST, pumps, (1,)) == {1}  # type: ignore[arg-type]
    with sim.lock:
        sim.faults.mute = 0
    pumps.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 5.0)
    assert apply_prices(HOST, pumps, [1]) == set()  # type: ignore[arg-type]
    assert sim.prices == {1: 1719, 2: 1859}
