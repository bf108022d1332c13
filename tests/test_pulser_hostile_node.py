"""A pump node that lies (a fake device on the dispenser's UART, or broken firmware): the controller refuses
figures no real node could send, so no sale settles from them (the pump shows OFFLINE, the sale waits for
the attendant); a node that restarts in a loop is reported once a minute, not on every reply."""

from __future__ import annotations

import time
from typing import Any

import pytest

from contracts.errors import PumpLinkError
from contracts.pump import PumpState
from drivers.pulser import meter, wire
from drivers.pulser.controller import PulserController
from drivers.pulser.node import STATUS_FIELDS


class FakeNode:
    """Answers every request with the status and totals the test sets."""

    def __init__(self) -> None:
        self.st = {"boot": 1, "state": meter.IDLE, "flags": 0, "number": 0, "count": 0, "volume_cl": 0,
                   "amount_cents": 0, "price": 1659, "stray": 0}
        self.totals = (100_000, 165_900)
        self.flap = False

    def request(self, kind: int, payload: bytes = b"") -> bytes:
        if kind == wire.TOTALS:
            return wire.put_u(self.totals[0], 8) + wire.put_u(self.totals[1], 8) + wire.put_u(0, 8)
        if kind == wire.AUTHORIZE:
            self.st.update(state=meter.AUTHORIZED, number=self.st["number"] + 1)
        if self.flap:
            self.st["boot"] = self.st["boot"] % 60000 + 1
        return b"".join(wire.put_u(self.st[name], size) for name, size in STATUS_FIELDS)

    def close(self) -> None:
        pass


def authorized(events: list[Any] | None = None) -> tuple[PulserController, FakeNode]:
    node = FakeNode()
    c = PulserController({1: node}, k_milli={1: 100000}, poll_interval=0.01, offline_time=0.1,
                         event=None if events is None else lambda *e: events.append(e))
    c.start()
    c.wait_status(1, lambda s: s.state is not PumpState.OFFLINE, 2)
    c.set_prices(1, {1: 1659})
    c.totals(1, 1)
    c.authorize(1, nozzles=[1], volume_cl=2000)           # 20.00 L at 1.659
    return c, node


@pytest.mark.parametrize("lie", [
    {"state": meter.MAX_REACHED, "volume_cl": 2000, "amount_cents": 1},                    # 20 L for 0.01
    {"state": meter.MAX_REACHED, "volume_cl": 2000, "amount_cents": 2000, "price": 1000},  # another price
    {"state": meter.MAX_REACHED, "volume_cl": 4_000_000, "amount_cents": 6_636_000},       # far past 20 L
])
def test_figures_no_real_node_could_send_are_refused(lie: dict[str, int]) -> None:
    c, node = authorized()
    try:
        node.st.update(lie)
        st = c.wait_status(1, lambda s: s.state is PumpState.OFFLINE or s.state.finished, 2)
        assert st.state is PumpState.OFFLINE
        with pytest.raises(PumpLinkError):
            c.stop(1)
    finally:
        c.close()


def test_a_filling_whose_volume_goes_down_without_a_restart_is_refused() -> None:
    c, node = authorized()
    try:
        node.st.update(state=meter.FILLING, volume_cl=1500, amount_cents=meter.amount_for(1500, 1659))
        c.wait_status(1, lambda s: s.volume_cl == 1500, 2)
        node.st.update(state=meter.MAX_REACHED, volume_cl=10, amount_cents=meter.amount_for(10, 1659))
        assert c.wait_status(1, lambda s: s.state is PumpState.OFFLINE or s.state.finished,
                             2).state is PumpState.OFFLINE
        node.st.update(boot=2)                     # after a restart a lower count is what it had saved
        assert c.wait_status(1, lambda s: s.state.finished, 2).volume_cl == 10
    finally:
        c.close()


def test_totals_going_backwards_are_refused() -> None:
    c, node = authorized()
    try:
        node.totals = (50_000, 82_950)
        with pytest.raises(PumpLinkError, match="backwards"):
            c.totals(1, 1)
    finally:
        c.close()


def test_a_node_restarting_in_a_loop_is_reported_once_a_minute() -> None:
    events: list[Any] = []
    c, node = authorized(events)
    try:
        node.flap = True
        time.sleep(0.5)                            # some 50 polls, each with a new boot number
        assert [e[1] for e in events] == ["pump_node_restarted"]
    finally:
        c.close()
