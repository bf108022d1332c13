"""firmware.terminal.cardholder: the cardholder port on a panel, a PIN pad and a stripe reader. The panel
is a scripted key source (the panel's own drivers are tested in test_panel.py); time is a fake clock, so
timeouts pass without waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contracts.errors import CardError, PinPadError, SaleCancelled
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.programs.base import Question
from firmware.terminal.cardholder import PanelCardholder

TRACK = Track2("4761739001010135", "3106", "101", "0000000000")   # test range, Luhn-valid


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


class Panel:
    """Keys from a script; each read_key without a key left lets its timeout pass on the clock."""

    languages = ("en", "de")

    def __init__(self, clock: Clock, *keys: str) -> None:
        self.clock, self.keys = clock, list(keys)
        self.screens: list[tuple[str, dict[str, Any]]] = []
        self.language = "en"
        self.flushed = 0

    def show(self, screen: str, **fields: Any) -> None:
        self.screens.append((screen, fields))

    def flush_keys(self) -> None:
        self.flushed += 1

    def read_key(self, timeout: float) -> str | None:
        if self.keys:
            return self.keys.pop(0)
        self.clock.t += timeout
        return None

    def set_language(self, code: str) -> None:
        self.language = code


class PinPad:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def _digits(self, on_digits: Callable[[int], None]) -> None:
        if self.fail:
            raise PinPadError("cancelled on the PIN pad")
        for n in range(1, 5):
            on_digits(n)

    def read_pin_block(self, pan: str, timeout: float, on_digits: Callable[[int], None] = print) -> bytes:
        self._digits(on_digits)
        return b"\x41" * 16

    def read_dukpt_pin_block(self, pan: str, timeout: float, on_digits: Callable[[int], None] = print, *,
                             fmt: str = "iso0-tdea2") -> tuple[bytes, bytes]:
        self._digits(on_digits)
        return b"K" * 12, (b"\x42" * 16 if fmt == "iso4-aes" else b"\x40" * 8)

    def read_offline_pin(self, timeout: float, on_digits: Callable[[int], None] = print) -> bytearray:
        self._digits(on_digits)
        return bytearray(b"\x24\x12\x34")


class Stripes:
    def __init__(self, clock: Clock, swipes: list[Track2 | CardError | None]) -> None:
        self.clock, self.swipes, self.flushed = clock, swipes, 0

    def wait_swipe(self, timeout: float) -> Track2 | None:
        got = self.swipes.pop(0) if self.swipes else None
        if isinstance(got, CardError):
            raise got
        if got is None:
            self.clock.t += timeout
        return got

    def flush(self) -> None:
        self.flushed += 1


def port(*keys: str, pinpad: PinPad | None = None, swipes: list[Any] | None = None,
         timeout: float = 10.0) -> tuple[PanelCardholder, Panel, Clock]:
    clock = Clock()
    panel = Panel(clock, *keys)
    stripes = Stripes(clock, swipes) if swipes is not None else None
    p = PanelCardholder(panel, pinpad or PinPad(), stripes, timeout=timeout, home="en", clock=clock,
                        sleep=clock.sleep)
    return p, panel, clock


def test_choose_pump_takes_a_free_pump_and_ignores_other_keys() -> None:
    p, panel, _ = port("7", "ENTER", "3", "2")
    assert p.choose_pump([2, 4]) == 2
    assert panel.screens == [(Screen.SELECT_PUMP, {"pumps": [2, 4]})] and panel.flushed == 1


@pytest.mark.parametrize(("keys", "why"), [(("1", "CANCEL"), "cancelled"), ((), "timed out")])
def test_choose_pump_ends_on_cancel_or_timeout(keys: tuple[str, ...], why: str) -> None:
    p, _, clock = port(*keys)
    with pytest.raises(SaleCancelled, match=why):
        p.choose_pump([2, 4])
    assert clock.t >= (10.0 if not keys else 0)


def test_choose_application_by_number_or_enter_when_one() -> None:
    p, panel, _ = port("9", "2")
    assert p.choose(["VISA DEBIT", "MAESTRO"]) == 1
    assert panel.screens[-1] == (Screen.CHOOSE_APP, {"options": ["VISA DEBIT", "MAESTRO"]})
    assert port("ENTER")[0].choose(["VISA"]) == 0
    with pytest.raises(SaleCancelled):
        port("ENTER")[0].choose(["VISA", "MAESTRO"])      # ENTER picks only a single choice


def test_ask_collects_digits_with_clear_and_limits() -> None:
    p, panel, _ = port("ENTER", "1", "2", "CLEAR", "4", "7", "1", "1", "9", "ENTER")
    assert p.ask(Question("vehicle", max_len=4)) == "4711"          # ENTER before min_len is ignored
    assert panel.screens[0] == (Screen.QUESTION, {"question": "vehicle", "answer": ""})
    assert (Screen.QUESTION, {"question": "vehicle", "answer": ""}) in panel.screens[3:]   # after CLEAR


def test_ask_is_cancelled_like_every_prompt() -> None:
    with pytest.raises(SaleCancelled):
        port("1", "CANCEL")[0].ask(Question("odometer"))


def test_pin_entry_shows_stars_and_a_pin_pad_cancel_cancels_the_sale() -> None:
    p, panel, _ = port()
    assert p.pin_block("6009990000000016") == b"\x41" * 16
    assert [f["stars"] for s, f in panel.screens if s == Screen.ENTER_PIN] == ["", "*", "**", "***", "****"]
    assert p.dukpt_pin_block("6009990000000016") == (b"K" * 12, b"\x40" * 8)     # format 0 by default
    assert p.dukpt_pin_block("6009990000000016", fmt="iso4-aes") == (b"K" * 12, b"\x42" * 16)
    assert p.offline_pin(last_try=True) == bytearray(b"\x24\x12\x34")
    assert panel.screens[-1] == (Screen.PROCESSING, {})
    assert any(s == Screen.ENTER_PIN_LAST for s, _ in panel.screens)
    failing = port(pinpad=PinPad(fail=True))[0]
    for entry in (lambda: failing.pin_block("6009990000000016"), lambda: failing.offline_pin(False),
                  lambda: failing.dukpt_pin_block("6009990000000016")):
        with pytest.raises(SaleCancelled):
            entry()


def test_swipe_waits_for_a_track_and_can_be_cancelled() -> None:
    p, panel, _ = port(swipes=[None, None, TRACK])
    assert p.swipe() == TRACK and panel.screens == [(Screen.SWIPE_CARD, {})]
    with pytest.raises(SaleCancelled, match="no swipe"):
        port(swipes=[])[0].swipe()
    with pytest.raises(SaleCancelled, match="swipe cancelled"):
        port("CANCEL", swipes=[None])[0].swipe()
    with pytest.raises(CardError):
        port(swipes=[CardError("garbled")])[0].swipe()
    with pytest.raises(CardError, match="no stripe reader"):
        port()[0].swipe()


def test_notice_stays_for_its_time_and_followers_keep_off_while_serving() -> None:
    p, panel, clock = port(swipes=[])
    p.notice(Screen.APPROVED_UP_TO, 1.5, amount="50.00 EUR", pump=1)
    assert clock.slept == [1.5]
    p.begin()
    p.set_language("de")
    p.status(Screen.FILLING, pump=2, litres="1.00", amount="1.66 EUR")     # a follower: not shown
    assert panel.screens[-1][0] == Screen.APPROVED_UP_TO
    p.end()
    assert panel.language == "de" and p.stripes is not None and p.stripes.flushed == 1   # until idle
    p.idle()
    assert panel.language == "en"
    p.status(Screen.FILLING, pump=2, litres="1.00", amount="1.66 EUR")
    assert panel.screens[-1][0] == Screen.FILLING
