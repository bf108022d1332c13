"""Door and tamper switches, the paper-low sensor, status LEDs and the buzzer, on simulated pins."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest

from contracts.errors import ConfigError
from drivers.gpio.devices import Buzzer, Led, PaperSensor, Switch
from drivers.gpio.sim import SimPins


def edges(pins: SimPins, number: int) -> list[tuple[bool, float]]:
    seen: list[tuple[bool, float]] = []
    pins.on_output(lambda n, level: seen.append((level, time.monotonic())) if n == number else None)
    return seen


def test_a_door_switch_reports_open_once_after_its_contact_stops_bouncing() -> None:
    pins = SimPins()
    door = Switch(pins, 5, name="door", bounce_ms=15)           # contact to ground: closed door reads low
    pins.drive(5, True)                                          # the door is shut
    tamper = Switch(pins, 6, name="tamper", active_low=False, bounce_ms=0)   # normally-closed loop
    assert door.name == "door" and door.is_active() is False     # pulled up before any drive: inactive
    opened = threading.Event()
    changes: list[bool] = []
    door.on_change(lambda active: (changes.append(active), opened.set()))
    for level in (False, True, False, True, False):
        pins.drive(5, level)
    assert opened.wait(2)
    time.sleep(0.05)
    assert changes == [True] and door.is_active() is True
    tamper_changes: list[bool] = []
    tamper.on_change(tamper_changes.append)
    pins.drive(6, False)
    pins.drive(6, True)                                          # the loop is cut: high
    assert tamper_changes == [False, True] and tamper.is_active()
    pins.close()


def test_the_paper_sensor_says_when_the_roll_is_low() -> None:
    pins = SimPins()
    paper = PaperSensor(pins, 12, bounce_ms=5)
    low = threading.Event()
    paper.on_change(lambda active: low.set() if active else None)
    assert paper.paper_low() is False
    pins.drive(12, False)
    assert low.wait(2) and paper.paper_low() is True
    pins.close()


def test_a_led_lights_goes_out_and_blinks_at_its_period() -> None:
    pins = SimPins()
    seen = edges(pins, 20)
    led = Led(pins, 20, active_low=True)                         # lit when its pin is low
    led.on()
    assert led.is_on() and pins.level(20) is False
    led.off()
    assert pins.level(20) is True
    seen.clear()
    led.blink(period_ms=40, on_ms=10)
    time.sleep(0.3)
    led.off()
    lit = [t for level, t in seen if level is False]
    assert 5 <= len(lit) <= 9                                    # about 300 / 40 flashes
    periods = [b - a for a, b in pairwise(lit)]
    assert all(0.035 < p < 0.08 for p in periods), periods
    assert pins.level(20) is True and not led.is_on()
    with pytest.raises(ConfigError, match="on_ms"):
        led.blink(period_ms=40, on_ms=40)
    pins.close()


def test_the_buzzer_beeps_without_holding_the_caller() -> None:
    pins = SimPins()
    seen = edges(pins, 21)
    buzzer = Buzzer(pins, 21)
    started = time.monotonic()
    buzzer.beep(times=3, ms=20, gap_ms=30)
    assert time.monotonic() - started < 0.02                     # returned at once
    assert buzzer.wait(2)
    levels = [level for level, _ in seen]
    assert levels == [False, True, False, True, False, True, False]
    ons = [t for level, t in seen if level][:3]
    assert all(0.045 < b - a < 0.09 for a, b in pairwise(ons))
    buzzer.beep(times=2, ms=500)
    buzzer.off()                                                 # cut short
    assert pins.level(21) is False and buzzer.wait(0.1)
    for bad in ({"times": 0}, {"times": 50}, {"ms": 0}):
        with pytest.raises(ConfigError):
            buzzer.beep(**bad)
    buzzer.close()
    pins.close()
