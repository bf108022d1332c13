"""SimPins, the in-process GPIO header: levels, active_low, debouncing, claims, sharing by URL, close."""

from __future__ import annotations

import doctest
import threading
import time
from types import ModuleType

import pytest

import drivers.gpio.devices as devices_module
import drivers.gpio.pins as pins_module
import drivers.gpio.remote as remote_module
import drivers.gpio.sim as sim_module
import drivers.gpio.txenable as txenable_module
from contracts.errors import ConfigError
from drivers.devices import open_device
from drivers.gpio.sim import SimPins, shared


def test_inputs_read_their_pull_until_driven_and_active_low_inverts() -> None:
    pins = SimPins()
    up = pins.input(5, pull_up=True)
    down = pins.input(6, pull_up=False)
    door = pins.input(7, pull_up=True, active_low=True)
    assert (up.read(), down.read(), door.read()) == (True, False, False)
    pins.drive(7, False)
    pins.drive(6, True)
    assert (down.read(), door.read()) == (True, True)
    pins.close()


def test_a_level_driven_before_the_claim_is_the_pins_level() -> None:
    pins = SimPins()
    pins.drive(9, False)
    assert pins.input(9, pull_up=True).read() is False
    pins.close()


def test_callbacks_run_before_drive_returns_in_order_and_only_on_changes() -> None:
    pins = SimPins()
    pin = pins.input(17, pull_up=False)
    seen: list[bool] = []
    pin.on_change(seen.append)
    for level in (True, True, False, True, False, False):
        pins.drive(17, level)
    assert seen == [True, False, True, False]
    pins.close()


def test_two_thousand_pulses_are_all_counted() -> None:
    pins = SimPins()
    meter = pins.input(27, pull_up=False)
    rising = [0]

    def count(level: bool) -> None:
        if level:
            rising[0] += 1

    meter.on_change(count)
    started = time.monotonic()
    pins.pulses(27, 2000, hz=2000)
    took = time.monotonic() - started
    assert rising[0] == 2000
    assert 0.95 <= took < 3.0
    pins.close()


def test_a_chattering_switch_reports_its_final_level_once_after_the_bounce() -> None:
    pins = SimPins()
    door = pins.input(4, pull_up=True, active_low=True, bounce_ms=30)
    changes: list[bool] = []
    done = threading.Event()

    def changed(level: bool) -> None:
        changes.append(level)
        done.set()

    door.on_change(changed)
    for level in (False, True, False, True, False):     # contact chatter, ends closed (low = active)
        pins.drive(4, level)
    assert door.read() is False                           # not reported yet: still bouncing
    assert done.wait(2)
    time.sleep(0.1)                                      # nothing more comes
    assert changes == [True] and door.read() is True
    pins.close()


def test_a_bounce_that_ends_where_it_started_reports_nothing() -> None:
    pins = SimPins()
    door = pins.input(4, pull_up=True, bounce_ms=20)
    changes: list[bool] = []
    door.on_change(changes.append)
    pins.drive(4, False)
    pins.drive(4, True)
    time.sleep(0.15)
    assert changes == [] and door.read() is True
    pins.close()


def test_outputs_levels_listeners_and_close_to_the_safe_level() -> None:
    pins = SimPins()
    seen: list[tuple[int, bool]] = []
    pins.on_output(lambda n, level: seen.append((n, level)))
    relay = pins.output(22, initial=False)
    lamp = pins.output(23, initial=False, active_low=True)       # lit when low
    assert (pins.level(22), pins.level(23)) == (False, True)
    relay.write(True)
    lamp.write(True)
    assert (relay.read(), lamp.read()) == (True, True)
    assert (pins.level(22), pins.level(23)) == (True, False)
    pins.close()
    assert (pins.level(22), pins.level(23)) == (False, True)
    assert seen == [(22, False), (23, True), (22, True), (23, False), (22, False), (23, True)]
    with pytest.raises(ConfigError):
        relay.write(True)


def test_numbers_outside_the_header_and_double_claims_are_config_errors() -> None:
    pins = SimPins()
    for bad in (0, 1, 28, 40, -3):
        with pytest.raises(ConfigError, match="2..27"):
            pins.input(bad)
        with pytest.raises(ConfigError):
            pins.output(bad)
    pins.output(12)
    with pytest.raises(ConfigError, match="already in use"):
        pins.input(12)
    with pytest.raises(ConfigError, match="already in use"):
        pins.output(12)
    with pytest.raises(ConfigError, match="bounce_ms"):
        pins.input(13, bounce_ms=-1)
    with pytest.raises(ConfigError, match="not an output"):
        pins.level(13)
    pins.close()
    pins.input(12).read()          # released by close: claimable again
    pins.close()


def test_sim_urls_with_one_name_share_one_header() -> None:
    terminal = open_device("gpio", "sim://gpio-test-share")
    assert terminal is shared("gpio-test-share") is open_device("gpio", "sim://gpio-test-share")
    assert open_device("gpio", "sim://") is not open_device("gpio", "sim://")
    door = terminal.input(16, pull_up=True, active_low=True)
    shared("gpio-test-share").drive(16, False)
    assert door.read() is True
    terminal.close()
    with pytest.raises(ConfigError):
        open_device("gpio", "sim://x?speed=1")
    with pytest.raises(ConfigError):
        open_device("gpio", "sim://x", speed=1)


@pytest.mark.parametrize("module", [pins_module, sim_module, remote_module, devices_module, txenable_module])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_a_callback_may_wait_for_a_thread_that_reads_the_pin() -> None:
    pins = SimPins()
    nozzle = pins.input(8, pull_up=False)
    pump_lock = threading.Lock()
    holding, got_lock = threading.Event(), []
    read_in_thread: list[bool] = []

    def pump_loop() -> None:            # holds the pump's lock while it reads the nozzle
        with pump_lock:
            holding.wait(2)
            read_in_thread.append(nozzle.read())

    def changed(level: bool) -> None:   # the callback needs the pump's lock
        holding.set()
        got_lock.append(pump_lock.acquire(timeout=2))
        if got_lock[-1]:
            pump_lock.release()

    nozzle.on_change(changed)
    loop = threading.Thread(target=pump_loop)
    loop.start()
    pins.drive(8, True)
    loop.join(3)
    assert got_lock == [True] and read_in_thread == [True]
    pins.close()
