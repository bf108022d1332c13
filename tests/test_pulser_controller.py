"""PulserController (drivers/pulser/controller.py) over a simulated pump node on a pty, opened as the
terminal opens it: drivers.devices.open_device("pump_line", "nodesim://...")."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.errors import MessageError, PumpError, PumpStateError
from contracts.pump import PumpState
from drivers.devices import open_device
from drivers.pulser.controller import PulserController

PRICE = 1659


@pytest.fixture
def line() -> Iterator[tuple[PulserController, Any]]:
    controller = open_device("pump_line", "nodesim://?pumps=1&k=100&flow=2000", pumps=[1])
    try:
        yield controller, controller.sim            # type: ignore[attr-defined]
    finally:
        controller.close()


@pytest.fixture
def priced(line: tuple[PulserController, Any]) -> tuple[PulserController, Any]:
    controller, sim = line
    controller.set_prices(1, {1: PRICE})
    controller.wait_status(1, lambda st: st.state is PumpState.RESET, 3)
    return controller, sim


def test_sale_stops_at_the_volume_preset(priced: tuple[PulserController, Any]) -> None:
    controller, sim = priced
    controller.authorize(1, nozzles=[1], volume_cl=1000)
    assert controller.status(1).state is PumpState.AUTHORIZED
    sim.lift()
    st = controller.wait_status(1, lambda st: st.state.finished, 5)
    assert (st.state, st.volume_cl, st.amount_cents, st.price_milli) == (PumpState.MAX_REACHED, 1000, 1659,
                                                                       PRICE)
    assert st.nozzle == 1 and st.nozzle_out
    totals = controller.totals(1, 1)
    assert (totals.volume_cl, totals.amount_cents) == (1000, 1659)
    sim.hang()
    controller.authorize(1, nozzles=[1], volume_cl=200)      # the finished filling is reset first
    sim.lift()
    st = controller.wait_status(1, lambda st: st.state.finished, 5)
    assert st.volume_cl == 200 and controller.totals(1, 1).volume_cl == 1200


def test_amount_preset(priced: tuple[PulserController, Any]) -> None:
    controller, sim = priced
    controller.authorize(1, nozzles=[1], amount_cents=1000)
    sim.lift()
    st = controller.wait_status(1, lambda st: st.state.finished, 5)
    assert (st.state, st.volume_cl, st.amount_cents) == (PumpState.MAX_REACHED, 603, 1000)


def test_stop_mid_filling(priced: tuple[PulserController, Any]) -> None:
    controller, sim = priced
    controller.authorize(1, nozzles=[1])
    sim.lift()
    controller.wait_status(1, lambda st: st.volume_cl >= 100, 5)
    controller.stop(1)
    st = controller.wait_status(1, lambda st: st.state.finished, 5)
    assert st.state is PumpState.FILLING_COMPLETED and st.volume_cl >= 100
    assert controller.totals(1, 1).volume_cl == st.volume_cl


def test_offline_when_the_node_stops_answering_then_back(priced: tuple[PulserController, Any]) -> None:
    controller, sim = priced
    sim.drop_requests = 10**9                                   # the line goes dead
    controller.wait_status(1, lambda st: st.state is PumpState.OFFLINE, 5)
    with pytest.raises(PumpError):
        controller.authorize(1, nozzles=[1], volume_cl=100)
    sim.drop_requests = 0
    st = controller.wait_status(1, lambda st: st.state is not PumpState.OFFLINE, 5)
    assert st.state is PumpState.RESET and st.price_milli == PRICE


def test_prices_and_not_programmed(line: tuple[PulserController, Any]) -> None:
    controller, _ = line
    st = controller.wait_status(1, lambda st: st.state is not PumpState.OFFLINE, 3)
    assert st.state is PumpState.NOT_PROGRAMMED                   # calibrated, but no price yet
    with pytest.raises(PumpStateError):
        controller.authorize(1, nozzles=[1], volume_cl=100)
    with pytest.raises(PumpStateError):
        controller.set_prices(1, {2: PRICE})                     # one nozzle only
    with pytest.raises(PumpStateError):
        controller.set_prices(1, {1: 0})
    controller.set_prices(1, {1: PRICE})
    st = controller.wait_status(1, lambda st: st.state is PumpState.RESET, 3)
    assert st.price_milli == PRICE
    with pytest.raises(PumpStateError):
        controller.authorize(1, nozzles=[2], volume_cl=100)
    with pytest.raises(PumpError):
        controller.status(2)


def test_totals_of_nozzle_two_refused(priced: tuple[PulserController, Any]) -> None:
    controller, _ = priced
    with pytest.raises(MessageError):
        controller.totals(1, 2)
    assert controller.totals(1, 1).volume_cl == 0


def test_node_restart_is_seen_and_calibration_sent_again(priced: tuple[PulserController, Any],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    controller, sim = priced
    caplog.set_level(logging.WARNING, logger="drivers.pulser.controller")
    controller.authorize(1, nozzles=[1])
    sim.lift()
    controller.wait_status(1, lambda st: st.volume_cl >= 300, 5)
    sim.restart()
    st = controller.wait_status(1, lambda st: st.state.finished, 5)
    assert st.state is PumpState.FILLING_COMPLETED
    assert any(r.getMessage() == "pump node restarted" for r in caplog.records)
    assert controller.totals(1, 1).volume_cl == st.volume_cl
    sim.hang()
    deadline = time.monotonic() + 2
    while True:                 # refused until the next poll has sent the calibration again
        try:
            controller.authorize(1, nozzles=[1], volume_cl=100)
            break
        except PumpStateError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    sim.lift()
    assert controller.wait_status(1, lambda st: st.state.finished, 5).volume_cl == 100
