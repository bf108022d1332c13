"""Faults a review found in the pulser drivers, each with the behaviour that must hold now: a command whose
replies are all lost, a stop read before the filling is final, a K-factor change after a filling, a unit
closed while pulses still come, a wiped node, a coarse meter's volume preset, resume after a hang-up, a
request repeated with a new payload, a status that does not decode."""

from __future__ import annotations

import time

import pytest

from contracts.errors import PumpLinkError, PumpTimeout
from contracts.pump import PumpState
from drivers.devices import open_device
from drivers.gpio.sim import SimPins
from drivers.pulser import meter, wire
from drivers.pulser.controller import PulserController
from drivers.pulser.gpio_line import LocalUnit
from drivers.pulser.meter import PulserCore
from drivers.pulser.node import PumpNode
from drivers.pulser.node_sim import MemoryStore

URL = "nodesim://?pumps=3&k=100&flow=2000"


def node_line() -> PulserController:
    c: PulserController = open_device("pump_line", URL, pumps=[3])
    c.wait_status(3, lambda s: s.state is not PumpState.OFFLINE, 5)
    c.set_prices(3, {1: 1659})
    c.wait_status(3, lambda s: s.state is PumpState.RESET, 5)
    return c


def test_an_authorize_never_answered_leaves_the_pump_offline_not_idle() -> None:
    c = node_line()
    try:
        sim = c.sim                                  # type: ignore[attr-defined]
        sim.drop_replies = 3                         # the node acts on AUTHORIZE; no reply gets back
        with pytest.raises(PumpTimeout):
            c.authorize(3, nozzles=[1], volume_cl=1000)
        assert c.status(3).state is PumpState.OFFLINE     # never taken for "not released"
        assert c.wait_status(3, lambda s: s.state is not PumpState.OFFLINE, 5).state is PumpState.AUTHORIZED
        c.stop(3)
        assert c.status(3).state is PumpState.FILLING_COMPLETED and c.status(3).volume_cl == 0
    finally:
        c.close()


def test_stop_returns_once_the_closing_valves_late_pulses_are_counted() -> None:
    pins = SimPins()
    pins.drive(23, False)
    pins.drive(17, False)
    unit = LocalUnit(PumpNode(PulserCore()), pins, pulse=17, relay=27, slow_relay=22, nozzle=23)
    c = PulserController({3: unit}, k_milli={3: 100000})
    c.start()
    try:
        c.wait_status(3, lambda s: s.state is PumpState.NOT_PROGRAMMED, 5)
        c.set_prices(3, {1: 1659})
        c.authorize(3, nozzles=[1], volume_cl=5000)
        pins.drive(23, True)
        c.wait_status(3, lambda s: s.state is PumpState.FILLING, 5)
        for _ in range(300):
            pins.drive(17, True)
            pins.drive(17, False)

        def late_pulses() -> None:                   # the valve closing: 15 more after STOP
            time.sleep(0.1)
            for _ in range(15):
                pins.drive(17, True)
                pins.drive(17, False)

        import threading
        t = threading.Thread(target=late_pulses)
        t.start()
        c.stop(3)
        t.join()
        st = c.status(3)
        assert st.state is PumpState.FILLING_COMPLETED and st.volume_cl == 315
        assert c.totals(3, 1).volume_cl == 315
    finally:
        c.close()
        pins.close()


def test_a_new_k_factor_never_refigures_a_finished_filling() -> None:
    core = PulserCore(k_milli=100000)
    assert core.authorize(1659, volume_cl=2000)
    core.nozzle(True, 0)
    core.pulses(2000, 10)
    core.tick(1000)
    assert core.state == meter.MAX_REACHED and core.volume_cl() == 2000
    assert core.configure(102000, 50)               # the terminal restarted with a calibrated K
    assert (core.volume_cl(), core.amount_cents(), core.totals()) == (2000, 3318, (2000, 3318))
    core.reset()
    assert core.authorize(1659, volume_cl=1020)
    assert core.fill_k == 102000


def test_a_closed_unit_opens_no_valve_whatever_comes_in() -> None:
    pins = SimPins()
    pins.drive(23, False)
    pins.drive(17, False)
    core = PulserCore(k_milli=100000)
    unit = LocalUnit(PumpNode(core), pins, pulse=17, relay=27, slow_relay=22, nozzle=23)
    unit.request(wire.AUTHORIZE, wire.put_u(1659, 4) + bytes((0,)) + wire.put_u(0, 4))
    pins.drive(23, True)
    deadline = time.monotonic() + 2
    while not pins.level(27) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pins.level(27)
    unit.close()
    assert not pins.level(27) and not pins.level(22)
    pins.drive(17, True)
    pins.drive(23, False)
    pins.drive(23, True)
    time.sleep(0.1)
    assert not pins.level(27) and not pins.level(22)
    pins.close()


def test_a_wiped_node_with_the_same_boot_number_is_given_its_k_again() -> None:
    c = node_line()
    try:
        sim = c.sim                                  # type: ignore[attr-defined]
        with sim.lock:                               # a new board: no snapshot, boot 1 again
            sim.store = MemoryStore()
            sim.node = PumpNode(PulserCore(), sim.store)
        st = c.wait_status(3, lambda s: s.state is PumpState.RESET and sim.core.k_milli == 100000, 5)
        assert st.state is PumpState.RESET
        c.authorize(3, nozzles=[1], volume_cl=500)
    finally:
        c.close()


@pytest.mark.parametrize(("k_milli", "preset", "stops_at"), [
    (10000, 2005, 2000), (10000, 1234, 1230), (1000, 150, 100), (100000, 2000, 2000), (98765, 1000, 1000),
])
def test_a_volume_preset_is_never_passed_on_a_coarse_meter(k_milli: int, preset: int, stops_at: int) -> None:
    core = PulserCore(k_milli=k_milli)
    assert core.authorize(1659, volume_cl=preset)
    core.nozzle(True, 0)
    while any(core.outputs()):
        core.pulses(1, 10)
    core.tick(1000)
    assert core.state == meter.MAX_REACHED and core.volume_cl() == stops_at <= preset


def test_resume_after_a_hang_up_opens_nothing() -> None:
    core = PulserCore(k_milli=100000)
    assert core.authorize(1659)
    core.nozzle(True, 0)
    core.suspend()
    core.nozzle(False, 10)
    core.resume()
    assert core.outputs() == (False, False)
    core.tick(1000)
    assert core.state == meter.COMPLETED


def test_the_same_seq_with_another_payload_is_a_new_request() -> None:
    node = PumpNode(PulserCore())
    reader = wire.Reader()
    reader.feed(node.receive(wire.encode(1, wire.CONFIG, wire.put_u(100000, 4) + wire.put_u(50, 2)), 0))
    reader.feed(node.receive(wire.encode(1, wire.CONFIG, wire.put_u(102000, 4) + wire.put_u(50, 2)), 10))
    assert reader.next() is not None and reader.next() is not None
    assert node.core.k_milli == 102000


def test_a_status_that_does_not_decode_takes_the_pump_offline_and_stop_fails_typed() -> None:
    class Garbled:
        def request(self, kind: int, payload: bytes = b"") -> bytes:
            return b"\x00\x01"                       # a node speaking another status layout

        def close(self) -> None:
            pass

    c = PulserController({1: Garbled()}, k_milli={1: 100000}, offline_time=0.2)
    c.start()
    try:
        assert c.wait_status(1, lambda s: s.state is PumpState.OFFLINE, 3).state is PumpState.OFFLINE
        with pytest.raises(PumpLinkError):
            c.stop(1)
    finally:
        c.close()
