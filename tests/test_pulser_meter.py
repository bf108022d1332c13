"""The pulser controller core (drivers/pulser/meter.py): presets with the slow stage, the settle time,
stray pulses, totals, and a restart from a snapshot; then random sequences of everything at once."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from drivers.pulser import meter
from drivers.pulser.meter import PulserCore, amount_for

K = 100000            # 100 pulses a litre: a pulse a centilitre


def filling(**preset: int) -> PulserCore:
    core = PulserCore(k_milli=K)
    assert core.authorize(1659, **preset)
    core.nozzle(True, 0)
    return core


def test_volume_preset_slows_down_then_stops_at_the_preset() -> None:
    core = filling(volume_cl=1000)
    assert core.outputs() == (True, True)
    core.pulses(949, 10)
    assert core.outputs() == (True, True)
    core.pulses(1, 11)                          # 50 cl (slow_cl) before the preset: fast stage off
    assert core.outputs() == (False, True)
    core.pulses(50, 20)
    assert core.outputs() == (False, False) and core.state == meter.FILLING     # closed, not yet final
    core.pulses(2, 100)                         # a closing valve's late pulses still belong to the filling
    core.tick(399)
    assert core.state == meter.FILLING
    core.tick(400)                              # settle_ms after the last pulse
    assert (core.state, core.volume_cl(), core.amount_cents()) == (meter.MAX_REACHED, 1002, 1662)
    assert core.totals() == (1002, 1662)


def test_amount_preset_never_closes_above_the_amount() -> None:
    core = filling(amount_cents=1000)           # 10.00 at 1.659/L: 6.03 L is 10.00, 6.04 L is 10.02
    while core.outputs() != (False, False):     # one pulse at a time, until the valve closes
        core.pulses(1, 1)
    core.tick(1000)
    assert core.state == meter.MAX_REACHED
    assert core.volume_cl() == 603 and core.amount_cents() == 1000


def test_amount_preset_with_a_coarse_meter() -> None:
    # 50 pulses a litre, 2 cl a pulse: 10.00 at 1.659/L allows 6.02 L (9.99); 6.04 L would be 10.02
    core = PulserCore(k_milli=50000)
    assert core.authorize(1659, amount_cents=1000)
    core.nozzle(True, 0)
    while core.outputs() != (False, False):
        core.pulses(1, 1)
    core.tick(1000)
    assert core.state == meter.MAX_REACHED
    assert (core.volume_cl(), core.amount_cents()) == (602, 999)
    coarse = PulserCore(k_milli=1000)           # 1 pulse a litre: a 0.01 preset buys not one pulse
    assert not coarse.authorize(15, amount_cents=1)


def test_k_factor_rounding() -> None:
    core = PulserCore(k_milli=98765)            # 98.765 pulses a litre
    assert core.authorize(2000, volume_cl=100)
    core.nozzle(True, 0)
    core.pulses(98, 1)                          # 0.992 L: not yet a litre
    assert core.volume_cl() == 99 and core.outputs() != (False, False)
    core.pulses(1, 2)
    assert core.volume_cl() == 100 and core.outputs() == (False, False)


def test_hang_up_ends_the_filling_below_the_preset() -> None:
    core = filling(volume_cl=1000)
    core.pulses(300, 1)
    core.nozzle(False, 2)
    core.tick(2 + meter.SETTLE_MS)
    assert (core.state, core.volume_cl()) == (meter.COMPLETED, 300)


def test_stop_suspend_resume_reset() -> None:
    core = filling()
    core.suspend()
    assert core.outputs() == (False, False) and core.suspended
    core.resume()
    assert core.outputs() == (True, True)
    core.pulses(10, 5)
    assert not core.reset()                      # busy
    core.stop(6)
    core.tick(6 + meter.SETTLE_MS)
    assert core.state == meter.COMPLETED and core.reset() and core.state == meter.IDLE
    assert core.volume_cl() == 10                # still readable until the next filling
    stopped = PulserCore(k_milli=K)
    assert stopped.authorize(1659)
    stopped.stop(0)                              # stopped before the nozzle was lifted
    assert (stopped.state, stopped.volume_cl()) == (meter.COMPLETED, 0)


def test_refusals() -> None:
    assert not PulserCore().authorize(1659)              # not calibrated
    core = PulserCore(k_milli=K)
    assert not core.authorize(0)
    assert not core.authorize(1659, amount_cents=0, volume_cl=-1)
    assert core.authorize(1659)
    assert not core.authorize(1659)                      # already authorized
    assert not core.configure(K, 50)                     # not while a filling is open
    assert not PulserCore().configure(999, 50)
    assert PulserCore().configure(K, 50)


def test_lifted_before_the_authorization_must_be_hung_up_first() -> None:
    core = PulserCore(k_milli=K)
    core.nozzle(True, 0)
    assert core.authorize(1659)
    assert core.state == meter.AUTHORIZED and core.outputs() == (False, False)
    core.nozzle(False, 1)
    core.nozzle(True, 2)
    assert core.state == meter.FILLING


def test_stray_pulses_are_counted_apart() -> None:
    core = PulserCore(k_milli=K)
    core.pulses(7, 0)
    assert (core.stray, core.total_pulses, core.totals()) == (7, 7, (0, 0))


def test_restart_ends_an_interrupted_filling_with_the_pulses_saved() -> None:
    core = filling(volume_cl=1000)
    core.pulses(400, 1)
    snap = core.snapshot()
    core.pulses(100, 2)                          # lost: never saved
    again = PulserCore()
    again.restore(snap)
    assert (again.state, again.volume_cl(), again.totals(), again.outputs()) == (
        meter.COMPLETED, 400, (400, amount_for(400, 1659)), (False, False))
    twice = PulserCore()
    twice.restore(again.snapshot())              # a second restart changes nothing
    assert (twice.state, twice.totals(), twice.number) == (meter.COMPLETED, again.totals(), 1)
    with pytest.raises(ValueError, match="version"):
        PulserCore().restore({**snap, "v": 99})


class Sales(RuleBasedStateMachine):
    """Random forecourt life of one dispenser, checked against a plain count of what happened."""

    @initialize(k=st.sampled_from([1000, 50000, 100000, 98765, 250000]))
    def start(self, k: int) -> None:
        self.core = PulserCore(k_milli=k)
        self.now = 0
        self.fed = 0                  # every pulse the meter gave
        self.finished_cl = 0          # sum of finished fillings' volumes
        self.finished_cents = 0
        self.past_counts = 0          # pulses of fillings before the current or last one
        self.preset: tuple[str, int] | None = None
        self.interrupted = False      # hung up, stopped or restarted during this filling
        self.late = 0                 # pulses after the valve closed for good

    def _after(self, before: int) -> None:
        core = self.core
        if before not in meter.FINISHED and core.state in meter.FINISHED:
            self.finished_cl += core.volume_cl()
            self.finished_cents += core.amount_cents()
            self._check_preset()

    def _check_preset(self) -> None:
        core = self.core
        if self.preset is None or self.interrupted:
            return
        kind, value = self.preset
        closed = core.count - self.late                                 # pulses when the valve closed
        closed_cl = closed * 100000 // core.fill_k
        if kind == "volume":
            # the cap is the most pulses whose volume does not pass the preset (one more would have); the
            # valve closed at the batch of pulses that reached it, never before
            assert core.state == meter.MAX_REACHED and closed >= core.cap
            assert core.cap * 100000 // core.fill_k <= value < (core.cap + 1) * 100000 // core.fill_k
        else:
            assert amount_for(closed_cl, core.price) <= value

    @rule(price=st.integers(1, 5000), by=st.sampled_from(["none", "volume", "amount"]),
          value=st.integers(1, 400))
    def authorize(self, price: int, by: str, value: int) -> None:
        before, count = self.core.state, self.core.count
        preset = {"volume": {"volume_cl": value}, "amount": {"amount_cents": value}}.get(by, {})
        if self.core.authorize(price, **preset):
            self.preset = None if by == "none" else (by, value)
            self.interrupted, self.late = False, 0
            self.past_counts += count
            assert before in (meter.IDLE, *meter.FINISHED)

    @rule(price=st.integers(1, 5000), by=st.sampled_from(["none", "volume", "amount"]),
          value=st.integers(1, 400), n=st.integers(1, 300))
    def sale(self, price: int, by: str, value: int, n: int) -> None:
        """A whole sale of the rules below: authorize, the nozzle lifted, the meter running, settled."""
        self.authorize(price, by, value)
        self.hang()
        self.lift()
        self.pulses(n, 1)
        self.tick(meter.SETTLE_MS)

    @rule()
    def lift(self) -> None:
        self.core.nozzle(True, self.now)

    @rule()
    def hang(self) -> None:
        if self.core.state == meter.FILLING:
            self.interrupted = True
        before = self.core.state
        self.core.nozzle(False, self.now)
        self._after(before)

    @rule(n=st.integers(1, 60), dt=st.integers(0, 50))
    def pulses(self, n: int, dt: int) -> None:
        for _ in range(n):            # one at a time, as the pin interrupt gives them
            self.now += dt
            core = self.core
            state, count, stray = core.state, core.count, core.stray
            if state == meter.FILLING and core.outputs() == (False, False) and not core.suspended:
                self.late += 1
            core.pulses(1, self.now)
            self.fed += 1
            if state == meter.FILLING:
                assert (core.count, core.stray) == (count + 1, stray)
            else:                     # no filling open: counted apart, never sold
                assert (core.count, core.stray) == (count, stray + 1)

    @rule()
    def stop(self) -> None:
        if self.core.state in (meter.AUTHORIZED, meter.FILLING):
            self.interrupted = True
        before = self.core.state
        self.core.stop(self.now)
        self._after(before)

    @rule()
    def suspend(self) -> None:
        self.core.suspend()

    @rule()
    def resume(self) -> None:
        self.core.resume()

    @rule()
    def reset(self) -> None:
        self.core.reset()

    @rule(dt=st.integers(0, 2 * meter.SETTLE_MS))
    def tick(self, dt: int) -> None:
        self.now += dt
        before = self.core.state
        self.core.tick(self.now)
        self._after(before)

    @rule()
    def restart(self) -> None:
        before = self.core.state
        if before in (meter.AUTHORIZED, meter.FILLING):
            self.interrupted = True
        again = PulserCore()
        again.restore(self.core.snapshot())
        self.core = again
        self._after(before)

    @invariant()
    def every_pulse_counted_once(self) -> None:
        assert self.core.total_pulses == self.fed

    @invariant()
    def totals_are_the_finished_fillings(self) -> None:
        core = self.core
        if core.state in (meter.AUTHORIZED, meter.FILLING):
            assert core.totals() == (self.finished_cl + core.volume_cl(),
                                     self.finished_cents + core.amount_cents())
        else:
            assert core.totals() == (self.finished_cl, self.finished_cents)

    @invariant()
    def each_pulse_in_one_place(self) -> None:
        core = self.core
        assert core.stray + self.past_counts + core.count == self.fed

Sales.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_random_sales = Sales.TestCase
