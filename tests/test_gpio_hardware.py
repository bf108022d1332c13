"""The Raspberry Pi backends where no Pi is: the missing library's error, URL validation, and the backends'
own logic over small stand-ins for the RPi.GPIO and lgpio modules (their documented calls, nothing more)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from contracts.errors import ConfigError, MissingComponent
from drivers.devices import open_device
from drivers.gpio.lgpio_pins import LgpioPins
from drivers.gpio.pins import GpioError
from drivers.gpio.rpigpio import RpiGpioPins


@pytest.mark.skipif(importlib.util.find_spec("RPi") is not None, reason="RPi.GPIO is installed here")
def test_rpigpio_without_the_library_says_what_to_install() -> None:
    with pytest.raises(MissingComponent, match=r"pip install RPi\.GPIO.*rpi-lgpio") as caught:
        open_device("gpio", "rpigpio://")
    assert caught.value.context["key"] == "devices.gpio"


@pytest.mark.skipif(importlib.util.find_spec("lgpio") is not None, reason="lgpio is installed here")
def test_lgpio_without_the_library_says_what_to_install() -> None:
    with pytest.raises(MissingComponent, match=r"pip install lgpio.*python3-lgpio"):
        open_device("gpio", "lgpio://?chip=4")


@pytest.mark.parametrize("url", ["rpigpio://host", "rpigpio://?mode=board", "rpigpio://:5", "lgpio://?chip=x",
                                 "lgpio://?chip=1.5", "lgpio://?chip=64", "lgpio://?pin=4", "lgpio://chip0"])
def test_malformed_hardware_urls_are_config_errors_before_any_import(url: str) -> None:
    with pytest.raises(ConfigError):
        open_device("gpio", url)


class FakeRPiGPIO:
    """RPi.GPIO's calls as documented; edge() plays the hardware."""

    BCM, BOARD, IN, OUT, PUD_UP, PUD_DOWN, HIGH, LOW, BOTH = 11, 10, 1, 0, 22, 21, 1, 0, 33

    def __init__(self, mode: int | None = None) -> None:
        self.mode = mode
        self.levels: dict[int, bool] = {}
        self.setups: dict[int, tuple[int, int | None]] = {}
        self.callbacks: dict[int, Callable[[int], None]] = {}
        self.cleaned: list[list[int]] = []

    def getmode(self) -> int | None:
        return self.mode

    def setmode(self, mode: int) -> None:
        self.mode = mode

    def setwarnings(self, flag: bool) -> None:
        pass

    def setup(self, channel: int, direction: int, pull_up_down: int | None = None, initial: int = -1) -> None:
        self.setups[channel] = (direction, pull_up_down)
        if direction == self.IN:
            self.levels.setdefault(channel, pull_up_down == self.PUD_UP)
        else:
            self.levels[channel] = bool(initial)

    def input(self, channel: int) -> int:
        return int(self.levels[channel])

    def output(self, channel: int, value: Any) -> None:
        if self.setups[channel][0] != self.OUT:
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        self.levels[channel] = bool(value)

    def add_event_detect(self, channel: int, edge: int, callback: Callable[[int], None]) -> None:
        if channel in self.callbacks:
            raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
        self.callbacks[channel] = callback

    def remove_event_detect(self, channel: int) -> None:
        del self.callbacks[channel]

    def cleanup(self, channels: list[int]) -> None:
        self.cleaned.append(sorted(channels))

    def edge(self, channel: int, level: bool) -> None:
        self.levels[channel] = level
        self.callbacks[channel](channel)


def test_rpigpio_pins_set_bcm_feed_edges_and_clean_up_only_their_channels() -> None:
    gpio = FakeRPiGPIO()
    pins = RpiGpioPins(gpio)
    assert gpio.mode == gpio.BCM
    nozzle = pins.input(17, pull_up=True, active_low=True)
    seen: list[bool] = []
    nozzle.on_change(seen.append)
    assert nozzle.read() is False and gpio.setups[17] == (gpio.IN, gpio.PUD_UP)
    gpio.edge(17, False)
    gpio.edge(17, True)
    assert seen == [True, False]
    relay = pins.output(22, initial=False, active_low=True)
    assert gpio.levels[22] is True                # inactive = high on an active-low relay
    relay.write(True)
    assert gpio.levels[22] is False and relay.read() is True
    with pytest.raises(ConfigError, match="already in use"):
        pins.output(17)
    with pytest.raises(ConfigError, match="2..27"):
        pins.input(31)
    gpio.levels[5] = True                         # someone else's channel in this process
    pins.close()
    assert gpio.levels[22] is True and gpio.cleaned == [[17, 22]] and gpio.callbacks == {}


def test_rpigpio_pins_refuse_board_numbering_and_report_library_errors_as_gpio_errors() -> None:
    with pytest.raises(ConfigError, match="BOARD"):
        RpiGpioPins(FakeRPiGPIO(mode=FakeRPiGPIO.BOARD))
    gpio = FakeRPiGPIO()
    gpio.callbacks[4] = print                     # edge detection already on (another library)
    pins = RpiGpioPins(gpio)
    with pytest.raises(GpioError, match="GPIO4 as an input"):
        pins.input(4)
    pins.input(4 + 1)                             # the failed claim did not leak; others still work
    pins.close()


class FakeLgpio:
    """lgpio's calls as documented; edge() plays the kernel's alert."""

    class error(Exception):  # lgpio's own name
        pass

    SET_PULL_UP, SET_PULL_DOWN, BOTH_EDGES = 32, 64, 3

    class Callback:
        def __init__(self, owner: FakeLgpio, gpio: int) -> None:
            self.owner, self.gpio = owner, gpio

        def cancel(self) -> None:
            del self.owner.callbacks[self.gpio]

    def __init__(self) -> None:
        self.levels: dict[int, int] = {}
        self.claimed: dict[int, str] = {}
        self.debounce: dict[int, int] = {}
        self.callbacks: dict[int, Callable[[int, int, int, int], None]] = {}
        self.open_chips: set[int] = set()

    def gpiochip_open(self, chip: int) -> int:
        if chip != 4:
            raise self.error("can not open gpiochip")
        self.open_chips.add(chip)
        return 100 + chip

    def gpiochip_close(self, handle: int) -> None:
        self.open_chips.discard(handle - 100)

    def gpio_claim_alert(self, handle: int, gpio: int, edge: int, flags: int) -> None:
        if gpio in self.claimed:
            raise self.error("GPIO busy")
        self.claimed[gpio] = "alert"
        self.levels.setdefault(gpio, int(flags == self.SET_PULL_UP))

    def gpio_set_debounce_micros(self, handle: int, gpio: int, micros: int) -> None:
        self.debounce[gpio] = micros

    def gpio_read(self, handle: int, gpio: int) -> int:
        return self.levels[gpio]

    def callback(self, handle: int, gpio: int, edge: int, func: Callable[[int, int, int, int], None]) -> Any:
        self.callbacks[gpio] = func
        return self.Callback(self, gpio)

    def gpio_claim_output(self, handle: int, gpio: int, level: int, flags: int) -> None:
        self.claimed[gpio] = "output"
        self.levels[gpio] = level

    def gpio_write(self, handle: int, gpio: int, level: int) -> None:
        self.levels[gpio] = level

    def gpio_free(self, handle: int, gpio: int) -> None:
        del self.claimed[gpio]

    def edge(self, gpio: int, level: int) -> None:
        self.levels[gpio] = level if level != 2 else self.levels[gpio]
        self.callbacks[gpio](4, gpio, level, 0)


def test_lgpio_pins_count_edges_debounce_in_the_kernel_and_free_only_their_lines() -> None:
    lg = FakeLgpio()
    with pytest.raises(GpioError, match="gpiochip0"):
        LgpioPins(lg, 0)
    pins = LgpioPins(lg, 4)
    meter = pins.input(27, pull_up=False)
    rising = [0]
    meter.on_change(lambda level: rising.__setitem__(0, rising[0] + level))
    for _ in range(500):
        lg.edge(27, 1)
        lg.edge(27, 2)                            # a watchdog report, not an edge
        lg.edge(27, 0)
    assert rising[0] == 500
    door = pins.input(4, pull_up=True, active_low=True, bounce_ms=25)
    assert lg.debounce == {4: 25_000} and door.read() is False
    relay = pins.output(22, initial=False)
    relay.write(True)
    assert lg.levels[22] == 1
    lg.claimed[9] = "alert"                       # a line someone else holds
    with pytest.raises(GpioError, match="GPIO9"):
        pins.input(9)
    pins.close()
    assert lg.levels[22] == 0 and lg.claimed == {9: "alert"} and lg.callbacks == {} and not lg.open_chips
