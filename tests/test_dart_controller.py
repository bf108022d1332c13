"""DartController over a real tty: the driver's DART pump simulator on a pty by default, or a bench line.

With `--device-url /dev/ttyUSB0 --device-pumps 1` (tests/conftest.py) the tests that need no customer at
the nozzle run against the bench pump; the others skip, saying why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.errors import ConfigError, MessageError, PumpError, PumpStateError, PumpTimeout
from contracts.pump import PumpState, PumpStatus
from drivers.pump import DartController, dart, open_pump_controller
from drivers.pump.sim_line import DartLineSimulator
from drivers.pump.simulator import SimFaults, SimPump, amount_for
from tests.conftest import PumpLine

FLOW = 5000.0           # cl/s: a 10 L preset takes 0.2 s
PRICES = {1: 1659, 2: 1789}
WAIT = 3.0


def make_controller(port: str, pumps: list[int], **kw: object) -> DartController:
    opts: dict[str, object] = {"reply_timeout": 0.2, "poll_interval": 0.005, "command_timeout": 2.0}
    opts.update(kw)
    return open_pump_controller(port, pumps, **opts)


def online(c: DartController, pump: int) -> PumpStatus:
    return c.wait_status(pump, lambda s: s.state != PumpState.OFFLINE, WAIT)


def settle(c: DartController, pump: int) -> None:
    """Leave the pump idle for the next test (on a bench it outlives the test)."""
    try:
        if c.status(pump).state in (PumpState.AUTHORIZED, PumpState.FILLING):
            c.stop(pump)
        if c.status(pump).state.finished:
            c.reset(pump)
    except PumpError:
        pass


@pytest.fixture
def p(pump_line: PumpLine) -> int:
    """Number of the pump under test."""
    return pump_line.pump


@pytest.fixture
def ctl(pump_line: PumpLine, p: int) -> Iterator[DartController]:
    c = make_controller(pump_line.url, list(pump_line.pumps))
    try:
        online(c, p)
        yield c
        settle(c, p)
    finally:
        c.close()


@pytest.fixture
def line(simulator: DartLineSimulator) -> DartLineSimulator:
    """The simulated line (the test skips on a bench line)."""
    return simulator


def cd1_commands(sim: DartLineSimulator, pump: int = 1) -> list[int]:
    return [d[0] for d in sim.sent_commands(pump, dart.CD1)]


# -- on the simulator and on a bench pump: no customer needed ------------------------------------------
def programmed(ctl: DartController, p: int) -> None:
    """Prices sent and the pump in the reset state, whatever state the pump was found in."""
    if ctl.status(p).state.finished:
        ctl.reset(p)
    ctl.set_prices(p, PRICES)
    if ctl.status(p).state.finished:             # a pump left finished takes prices and stays finished
        ctl.reset(p)


def test_set_prices_then_reset_state(ctl: DartController, p: int) -> None:
    programmed(ctl, p)
    st = ctl.status(p)
    assert st.state == PumpState.RESET and st.pump == p


def test_authorize_then_stop_without_a_filling(ctl: DartController, p: int) -> None:
    programmed(ctl, p)
    ctl.authorize(p, nozzles=[1], volume_cl=500)
    assert ctl.status(p).state == PumpState.AUTHORIZED
    with pytest.raises(PumpStateError):
        ctl.reset(p)                               # not while authorized
    with pytest.raises(PumpStateError):
        ctl.authorize(p, nozzles=[1])              # AUTHORIZE only from reset
    ctl.stop(p)
    st = ctl.status(p)
    assert (st.state, st.volume_cl) == (PumpState.FILLING_COMPLETED, 0)
    ctl.reset(p)
    assert ctl.status(p).state == PumpState.RESET
    ctl.reset(p)                                   # harmless in reset state
    ctl.stop(p)                                    # STOP in RESET: FILLING COMPLETE (states.TABLE)
    ctl.wait_status(p, lambda s: s.state == PumpState.FILLING_COMPLETED, WAIT)


def test_totals_are_read_and_stay_put_while_idle(ctl: DartController, p: int) -> None:
    programmed(ctl, p)
    first = ctl.totals(p, 1)
    assert (first.pump, first.nozzle) == (p, 1) and first.volume_cl >= 0 and first.amount_cents >= 0
    again = ctl.totals(p, 1)
    assert (again.volume_cl, again.amount_cents) == (first.volume_cl, first.amount_cents)


def test_restarted_controller_finds_the_pump_as_left(pump_line: PumpLine, p: int) -> None:
    with make_controller(pump_line.url, list(pump_line.pumps)) as first:
        online(first, p)
        programmed(first, p)
        first.authorize(p, nozzles=[1], volume_cl=300)
    with make_controller(pump_line.url, list(pump_line.pumps)) as second:   # it only asks, never resets
        st = second.wait_status(p, lambda s: s.state == PumpState.AUTHORIZED, WAIT)
        assert st.pump == p
        second.stop(p)
        second.reset(p)


def test_bad_arguments(ctl: DartController, pump_line: PumpLine, p: int) -> None:
    with pytest.raises(ConfigError):
        DartController("loop://", [])
    with pytest.raises(ConfigError):
        DartController("loop://", [33])
    absent = min(set(range(1, 33)) - set(pump_line.pumps))
    with pytest.raises(PumpError):
        ctl.status(absent)
    with pytest.raises(MessageError):
        ctl.set_prices(p, {2: 1000})
    with pytest.raises(MessageError):
        ctl.authorize(p, nozzles=[1], volume_cl=100, amount_cents=100)
    with pytest.raises(MessageError):
        ctl.set_prices(p, {1: 1_000_000})


# -- simulator only: a simulated customer at the nozzle, fault injection -------------------------------


def test_programming_a_new_pump(line: DartLineSimulator, ctl: DartController) -> None:
    assert ctl.status(1).state == PumpState.NOT_PROGRAMMED
    with pytest.raises(PumpStateError):
        ctl.authorize(1, nozzles=[1])              # not programmed until prices are sent
    ctl.set_prices(1, PRICES)
    # a real pump takes its first prices into FILLING COMPLETE (states.TABLE); set_prices() then resets it
    assert ctl.status(1).state == PumpState.RESET
    assert line.pump(1).prices == PRICES
    cmds = cd1_commands(line)
    assert cmds[-2:] == [dart.CMD_RESET, dart.CMD_STATUS]


def test_sale_with_volume_preset(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    assert ctl.totals(1, 1).volume_cl == 0
    ctl.authorize(1, nozzles=[1], volume_cl=1000)
    assert ctl.status(1).state == PumpState.AUTHORIZED
    assert pump.preset_volume_cl == 1000 and pump.allowed == {1}
    pump.lift(1)
    st = ctl.wait_status(1, lambda s: s.state == PumpState.FILLING and s.nozzle_out, WAIT)
    assert (st.nozzle, st.price_milli) == (1, 1659)
    assert pump.dispense(5000) == 1000             # the preset stops the flow exactly
    st = ctl.wait_status(1, lambda s: s.state == PumpState.MAX_REACHED and s.volume_cl == 1000, WAIT)
    assert st.amount_cents == amount_for(1000, 1659) == 1659
    pump.hang_up()                                 # hanging up in MAX REACHED: FILLING COMPLETE
    st = ctl.wait_status(1, lambda s: not s.nozzle_out, WAIT)
    assert (st.state, st.volume_cl, st.amount_cents) == (PumpState.FILLING_COMPLETED, 1000, 1659)
    t = ctl.totals(1, 1)
    assert (t.pump, t.nozzle, t.volume_cl, t.amount_cents) == (1, 1, 1000, 1659)

    # the next sale resets first (RESET only from a finished filling), and totals keep growing
    ctl.authorize(1, nozzles=[1, 2], amount_cents=500)
    cmds = cd1_commands(line)
    auths = [i for i, c in enumerate(cmds) if c == dart.CMD_AUTHORIZE]
    assert len(auths) == 2 and dart.CMD_RESET in cmds[auths[0]:auths[1]]
    pump.lift(2)
    pump.dispense(10_000)
    st = ctl.wait_status(1, lambda s: s.state == PumpState.MAX_REACHED, WAIT)
    assert st.volume_cl == 279 and st.amount_cents == amount_for(279, 1789) == 499
    pump.hang_up()
    assert ctl.totals(1, 2).volume_cl == 279
    assert ctl.totals(1, 1).volume_cl == 1000


def test_requested_volume_below_preset_then_hang_up(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    ctl.authorize(1, nozzles=[2], volume_cl=2000)
    pump.lift(2)
    assert pump.dispense(1234) == 1234
    st = ctl.wait_status(1, lambda s: s.volume_cl == 1234, WAIT)
    assert st.state == PumpState.FILLING
    pump.hang_up()
    st = ctl.wait_status(1, lambda s: s.state == PumpState.FILLING_COMPLETED, WAIT)
    assert (st.volume_cl, st.amount_cents) == (1234, amount_for(1234, 1789))


def test_reset_ordering_enforced(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    ctl.authorize(1, nozzles=[1], volume_cl=500)
    with pytest.raises(PumpStateError):
        ctl.reset(1)                               # not while authorized
    with pytest.raises(PumpStateError):
        ctl.authorize(1, nozzles=[1])              # AUTHORIZE only from reset
    pump.lift(1)
    ctl.wait_status(1, lambda s: s.state == PumpState.FILLING, WAIT)
    # the pump itself refuses RESET while filling, whatever the master sends
    with pump.lock:
        pump.command(dart.CD1, bytes([dart.CMD_RESET]))
        assert pump.state == PumpState.FILLING and pump.preset_volume_cl == 500
    pump.dispense(10_000)
    ctl.wait_status(1, lambda s: s.state == PumpState.MAX_REACHED, WAIT)
    ctl.reset(1)
    assert ctl.status(1).state == PumpState.RESET
    assert pump.preset_volume_cl is None and pump.volume_cl == 0   # RESET clears the preset
    ctl.reset(1)                                   # harmless in reset state
    ctl.stop(1)                                    # STOP in RESET: FILLING COMPLETE
    ctl.wait_status(1, lambda s: s.state == PumpState.FILLING_COMPLETED, WAIT)


def test_stop_ends_a_filling(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    ctl.authorize(1, nozzles=[1])
    pump.lift(1)
    pump.dispense(300)
    ctl.wait_status(1, lambda s: s.volume_cl == 300, WAIT)
    ctl.stop(1)
    st = ctl.status(1)
    assert (st.state, st.volume_cl) == (PumpState.FILLING_COMPLETED, 300)
    assert pump.dispense(100) == 0


def test_controller_restarted_mid_filling_reads_final_figures(line: DartLineSimulator) -> None:
    pump = line.pump(1)
    first = make_controller(line.port, [1])
    try:
        online(first, 1)
        first.set_prices(1, PRICES)
        first.authorize(1, nozzles=[1], volume_cl=3000)
        pump.lift(1)
        pump.dispense(700)
        first.wait_status(1, lambda s: s.volume_cl == 700, WAIT)
    finally:
        first.close()                             # the terminal "crashes"
    sent_before = len(line.sent_commands(1, dart.CD1))
    frames_before = len(line.frames)
    pump.dispense(300)                            # the customer keeps filling meanwhile

    second = make_controller(line.port, [1])
    try:
        st = second.wait_status(1, lambda s: s.state == PumpState.FILLING and s.volume_cl == 1000, WAIT)
        assert st.nozzle_out and st.nozzle == 1
        pump.hang_up()
        st = second.wait_status(1, lambda s: s.state == PumpState.FILLING_COMPLETED, WAIT)
        assert (st.volume_cl, st.amount_cents) == (1000, amount_for(1000, 1659))
        # it only asked: status and filling info, never RESET/AUTHORIZE/STOP
        assert set(cd1_commands(line)[sent_before:]) <= {dart.CMD_STATUS, dart.CMD_FILLING_INFO,
                                                          dart.CMD_PARAMETERS}
        data = [f for f in list(line.frames)[frames_before:] if f.kind == dart.DATA]
        assert data and data[0].txn == 0          # first frame after start carries TX# 0
    finally:
        second.close()


@pytest.mark.simulator
def test_four_pumps_on_one_line() -> None:
    numbers = [1, 2, 7, 32]
    sims = [SimPump(n, flow_cl_per_s=FLOW) for n in numbers]
    with DartLineSimulator(sims) as line:
        c = make_controller(line.port, numbers)
        try:
            for n in numbers:
                online(c, n)
                c.set_prices(n, PRICES)
                c.authorize(n, nozzles=[1, 2], volume_cl=100 * n)
            for sim in sims:
                sim.lift(1 + sim.number % 2)
                sim.dispense(10_000, wait=False)
            for sim in sims:
                n = sim.number
                st = c.wait_status(n, lambda s, n=n: s.state == PumpState.MAX_REACHED  # type: ignore[misc]
                                   and s.volume_cl == 100 * n, WAIT)
                assert st.amount_cents == amount_for(100 * n, PRICES[1 + n % 2])
                assert c.totals(n, 1 + n % 2).volume_cl == 100 * n
        finally:
            c.close()


def test_offline_pump_and_recovery(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    with pump.lock:
        pump.faults.mute = 1_000_000
    ctl.wait_status(1, lambda s: s.state == PumpState.OFFLINE, WAIT)
    with pytest.raises(PumpTimeout):
        ctl.authorize(1, nozzles=[1])
    with pump.lock:
        pump.faults.mute = 0
    assert ctl.wait_status(1, lambda s: s.state == PumpState.RESET, WAIT)
    ctl.authorize(1, nozzles=[1])


def test_line_faults_are_survived(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    with pump.lock:
        pump.faults.corrupt_crc = 2
        pump.faults.nak = 3                        # the controller resets its TX# after 3 NAKs
    ctl.set_prices(1, PRICES)
    with pump.lock:
        pump.faults.drop_bytes = 4
    ctl.authorize(1, nozzles=[1], volume_cl=400)
    assert pump.state == PumpState.AUTHORIZED


@pytest.mark.simulator
def test_fault_flow_stops_and_early_hang_up() -> None:
    faults = SimFaults(flow_stop_at_cl=250)
    with DartLineSimulator([SimPump(3, flow_cl_per_s=FLOW, faults=faults)]) as line:
        pump = line.pump(3)
        with make_controller(line.port, [3]) as c:
            online(c, 3)
            c.set_prices(3, PRICES)
            c.authorize(3, nozzles=[1], volume_cl=1000)
            pump.lift(1)
            assert pump.dispense(1000) == 250      # flow stops before the preset
            st = c.wait_status(3, lambda s: s.volume_cl == 250, WAIT)
            assert st.state == PumpState.FILLING
            pump.hang_up()
            c.wait_status(3, lambda s: s.state == PumpState.FILLING_COMPLETED, WAIT)

            with pump.lock:
                pump.faults.hang_up_at_cl = 120    # the customer hangs up early
            c.authorize(3, nozzles=[1], volume_cl=1000)
            pump.lift(1)
            assert pump.dispense(1000) == 120
            st = c.wait_status(3, lambda s: s.state == PumpState.FILLING_COMPLETED and not s.nozzle_out, WAIT)
            assert st.volume_cl == 120
            assert c.totals(3, 1).volume_cl == 370


def test_pump_restart_keeps_totals(line: DartLineSimulator, ctl: DartController) -> None:
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    ctl.authorize(1, nozzles=[1])
    pump.lift(1)
    pump.dispense(200)
    ctl.wait_status(1, lambda s: s.volume_cl == 200, WAIT)
    pump.restart()                                 # power cut mid-filling
    ctl.wait_status(1, lambda s: s.state == PumpState.NOT_PROGRAMMED, WAIT)
    assert ctl.totals(1, 1).volume_cl == 200
    ctl.set_prices(1, PRICES)
    assert ctl.status(1).state == PumpState.RESET


@pytest.mark.simulator
def test_suspend_pauses_and_resume_continues_a_filling() -> None:
    import time

    with DartLineSimulator([SimPump(1, flow_cl_per_s=500.0)]) as line:   # 10 L take 2 s
        pump = line.pump(1)
        with make_controller(line.port, [1]) as c:
            online(c, 1)
            c.set_prices(1, PRICES)
            with pytest.raises(PumpStateError):
                c.suspend(1)                       # nothing to suspend in the reset state
            c.authorize(1, nozzles=[1], volume_cl=1000)
            pump.lift(1)
            pump.dispense(10_000, wait=False)
            c.wait_status(1, lambda s: s.volume_cl >= 50, WAIT)
            c.suspend(1)
            assert pump.suspended
            with pump.lock:
                paused = pump.volume_cl
            c.wait_status(1, lambda s: s.volume_cl == paused, WAIT)   # the last figures before the pause
            time.sleep(0.3)                        # 150 cl would flow in this time
            st = c.status(1)
            assert st.state == PumpState.FILLING and st.volume_cl == paused == pump.volume_cl
            assert 0 < paused < 1000
            c.resume(1)
            assert not pump.suspended
            c.wait_status(1, lambda s: s.volume_cl > paused, WAIT)
            st = c.wait_status(1, lambda s: s.state == PumpState.MAX_REACHED, WAIT)
            assert st.volume_cl == 1000            # the filling went on to its preset
            cmds = cd1_commands(line)
            assert cmds.index(dart.CMD_SUSPEND) < cmds.index(dart.CMD_RESUME)


# -- hostile line (issue 10) ----------------------------------------------------------------------------
@pytest.mark.simulator
def test_babbling_line_with_a_dead_pump_still_stops_a_filling() -> None:
    """Pump 2 switched off and noise every 5 ms: pump 2 goes offline, pump 1's figures keep coming and its
    STOP goes out within the bound the controller states (DartLink.max_operation_time)."""
    import time

    with DartLineSimulator([SimPump(1, flow_cl_per_s=200.0), SimPump(2)]) as line, \
            make_controller(line.port, [1, 2], reply_timeout=0.05) as c:
        online(c, 1)
        online(c, 2)
        c.set_prices(1, PRICES)
        c.authorize(1, nozzles=[1])
        pump = line.pump(1)
        pump.lift(1)
        pump.dispense(100_000, wait=False)
        with line.pump(2).lock:
            line.pump(2).faults.mute = 10**9
        line.noise_interval = 0.005
        c.wait_status(2, lambda s: s.state == PumpState.OFFLINE, WAIT)
        seen = c.status(1).volume_cl
        c.wait_status(1, lambda s: s.volume_cl > seen + 20, WAIT)     # pump 1 is still followed
        assert c._link is not None
        bound = c._link.max_operation_time
        start = time.monotonic()
        c.stop(1)
        assert time.monotonic() - start < bound
        assert c.status(1).state == PumpState.FILLING_COMPLETED


def test_a_dc2_with_a_bad_amount_changes_nothing(line: DartLineSimulator, ctl: DartController) -> None:
    """All or none: a DC2 whose amount is not BCD must not leave its new volume beside the old amount."""
    pump = line.pump(1)
    ctl.set_prices(1, PRICES)
    ctl.authorize(1, nozzles=[1])
    pump.lift(1)
    pump.dispense(300)
    ctl.wait_status(1, lambda s: s.volume_cl == 300 and s.amount_cents == amount_for(300, 1659), WAIT)
    with pump.lock:
        pump.faults.bad_amount_at_cl = 500
    pump.dispense(200)                             # the DC2 for 500 cl comes with a broken amount
    st = ctl.wait_status(1, lambda s: s.volume_cl == 500, WAIT)
    assert st.amount_cents == amount_for(500, 1659)   # the frame was dropped and asked for again


@pytest.mark.simulator
def test_a_pump_with_its_own_decimals_is_read_and_commanded_in_them() -> None:
    """Volume with 3 decimals, amount and unit price with none (issue 11): read from DC7, every figure
    scaled both ways; the preset goes out as 10.000 L and comes back as 1000 cl."""
    with DartLineSimulator([SimPump(1, flow_cl_per_s=FLOW, decimals=(3, 0, 0))]) as line:
        pump = line.pump(1)
        with make_controller(line.port, [1]) as c:
            online(c, 1)
            c.set_prices(1, {1: 1_175_000, 2: 1_200_000})      # 1175 and 1200 a litre
            assert pump.prices == {1: 1_175_000, 2: 1_200_000}
            assert line.sent_commands(1, dart.CD5)[-1] == bytes.fromhex("001175001200")
            c.authorize(1, nozzles=[1], volume_cl=1000)
            assert line.sent_commands(1, dart.CD3)[-1] == dart.bcd_encode(10_000, 4)
            pump.lift(1)
            pump.dispense(5000)
            st = c.wait_status(1, lambda s: s.state == PumpState.MAX_REACHED, WAIT)
            assert (st.volume_cl, st.amount_cents, st.price_milli) == (1000, 1_175_000, 1_175_000)
            t = c.totals(1, 1)
            assert (t.volume_cl, t.amount_cents) == (1000, 1_175_000)
            with pytest.raises(MessageError):
                c.set_prices(1, {1: 1_175_500})   # half a unit cannot be shown without decimals


def test_pinned_decimals_are_used_without_asking(pump_line: PumpLine, simulator: DartLineSimulator) -> None:
    with make_controller(pump_line.url, [1], decimals=(2, 2, 3)) as c:
        online(c, 1)
        c.set_prices(1, PRICES)
        assert dart.CMD_PARAMETERS not in cd1_commands(simulator)
