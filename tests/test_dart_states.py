"""The simulated pump against drivers.pump.states.TABLE, row by row, and the pump-side rules of issue 11.

Every row of the table is driven on a fresh SimPump brought into the row's state by the line (frames
through handle()), so the table the tests read is the behaviour the simulator shows.
"""

from __future__ import annotations

import pytest

from drivers.pump import dart, layouts
from drivers.pump.simulator import SimPump
from drivers.pump.states import EVENTS, TABLE, next_state

NP, RS, AU, FI = dart.ST_NOT_PROGRAMMED, dart.ST_RESET, dart.ST_AUTHORIZED, dart.ST_FILLING
FC, MX, OFF, SU = dart.ST_FILLING_COMPLETED, dart.ST_MAX_REACHED, dart.ST_SWITCHED_OFF, dart.ST_SUSPENDED
ALL = (NP, RS, AU, FI, FC, MX, OFF, SU)
CMD = {"reset": dart.CMD_RESET, "authorize": dart.CMD_AUTHORIZE, "stop": dart.CMD_STOP,
       "switch_off": dart.CMD_SWITCH_OFF, "suspend": dart.CMD_SUSPEND, "resume": dart.CMD_RESUME}


class Master:
    """Talks to one SimPump through its line protocol, TX# and all."""

    def __init__(self, pump: SimPump) -> None:
        self.pump = pump
        self.tx = 0
        self.rx_last = -1

    def send(self, *transactions: tuple[int, bytes]) -> bytes | None:
        raw = dart.encode_data(self.pump.address, self.tx, list(transactions))
        reply = self.pump.handle(dart.decode(raw))
        self.tx = dart.next_txn(self.tx)
        return reply

    def cmd(self, *commands: int) -> None:
        self.send(*[(dart.CD1, bytes((c,))) for c in commands])

    def poll(self) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        while True:
            raw = self.pump.handle(dart.Frame(self.pump.address, dart.POLL))
            assert raw is not None
            frame = dart.decode(raw)
            if frame.kind != dart.DATA:
                return got
            got += frame.transactions
            self.pump.handle(dart.Frame(self.pump.address, dart.ACK, frame.txn))


def pump_in(state: int) -> tuple[SimPump, Master]:
    """A fresh pump brought into `state` the way a master and a customer would."""
    pump = SimPump(1, flow_cl_per_s=1e6)
    m = Master(pump)
    if state == NP:
        return pump, m
    m.send((dart.CD5, dart.bcd_encode(1659, 3) + dart.bcd_encode(1789, 3)))     # -> FILLING COMPLETE
    if state == FC:
        return pump, m
    m.cmd(dart.CMD_RESET)
    if state == RS:
        return pump, m
    if state == OFF:
        m.cmd(dart.CMD_SWITCH_OFF)
        return pump, m
    m.send((dart.CD2, b"\x01"), (dart.CD3, dart.bcd_encode(500, 4)), (dart.CD1, bytes((dart.CMD_AUTHORIZE,))))
    if state == AU:
        return pump, m
    pump.lift(1)
    if state == SU:
        m.cmd(dart.CMD_SUSPEND)
    elif state == MX:
        pump.dispense(500)
    return pump, m


def fire(pump: SimPump, m: Master, event: str) -> None:
    if event == "prices":
        m.send((dart.CD5, dart.bcd_encode(1700, 3) + dart.bcd_encode(1800, 3)))
    elif event in CMD:
        m.cmd(CMD[event])
    elif event == "flow":
        pump.lift(1)
    elif event == "nozzle_in":
        pump.hang_up()
    elif event == "max":
        pump.dispense(10_000)


def test_every_state_is_reachable() -> None:
    for state in ALL:
        assert pump_in(state)[0].code == state


@pytest.mark.parametrize("state,event", [(s, e) for s in ALL for e in EVENTS])
def test_simulator_follows_the_table(state: int, event: str) -> None:
    pump, m = pump_in(state)
    fire(pump, m, event)
    want = next_state(state, event)
    assert pump.code == (state if want is None else want), TABLE.get((state, event), "refused")


def test_the_issue_11_rows_are_in_the_table() -> None:
    assert next_state(NP, "prices") == FC
    assert next_state(RS, "stop") == next_state(MX, "stop") == next_state(OFF, "stop") == FC
    assert next_state(MX, "nozzle_in") == FC
    assert next_state(FI, "suspend") == SU and next_state(SU, "resume") == FI
    assert all(clause.startswith("PI 2.1.") for _, clause in TABLE.values())


def test_reset_keeps_the_allowed_nozzles_and_clears_the_presets() -> None:
    pump, m = pump_in(MX)
    m.cmd(dart.CMD_RESET)
    assert pump.code == RS and pump.allowed == {1}
    assert pump.preset_volume_cl is None and pump.preset_amount_cents is None


def test_filling_information_answers_dc2_and_dc3() -> None:
    pump, m = pump_in(FI)
    pump.dispense(120)
    m.poll()
    m.cmd(dart.CMD_FILLING_INFO)
    assert [t for t, _ in m.poll()] == [dart.DC2, dart.DC3]


def test_suspended_reports_status_8() -> None:
    _, m = pump_in(SU)
    assert (dart.DC1, bytes((SU,))) in m.poll()


def test_a_frame_with_a_bad_field_is_ignored_whole() -> None:
    pump, m = pump_in(RS)
    m.send((dart.CD3, dart.bcd_encode(500, 4)), (dart.CD4, b"\x00\x00\x0a\x00"))
    assert pump.preset_volume_cl is None and pump.preset_amount_cents is None
    assert pump.received[-1] == (dart.CD1, bytes((dart.CMD_RESET,)))


def test_totals_answer_by_counter_id() -> None:
    _, m = pump_in(MX)                             # 500 cl on nozzle 1 at 1.659
    m.send((dart.CD101, b"\x01"))
    m.send((dart.CD101, b"\x11"))
    m.send((dart.CD101, b"\x09"))
    got = [layouts.dc101_total(d) for t, d in m.poll() if t == dart.DC101]
    assert got == [(0x01, 500), (0x11, 830), (0x09, 500)]


def test_parameters_answer_dc7_with_the_pump_decimals() -> None:
    pump = SimPump(1, decimals=(3, 0, 0))
    m = Master(pump)
    m.cmd(dart.CMD_PARAMETERS)
    dc7 = [d for t, d in m.poll() if t == dart.DC7]
    assert len(dc7) == 1 and layouts.dc7_decimals(dc7[0]) == (3, 0, 0)
