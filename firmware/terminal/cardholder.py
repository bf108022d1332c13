"""The cardholder port on the terminal's own panel, PIN pad and stripe reader: every question a sale
asks, each with its timeout and the CANCEL key (both raise SaleCancelled). Key polling and waiting live
here, in the terminal process, not in the programs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from contracts.errors import CardError, PinPadError, SaleCancelled
from contracts.iso8583_dialect import PIN_ISO0_TDEA2
from contracts.screens import Screen
from contracts.track2 import Track2
from firmware.programs.base import Question

__all__ = ["MORE_TIME_KEY", "PanelCardholder"]

# The key that gives a timed prompt more time (EN 301 549 5.1.3 non-visual access, WCAG 2.2.1 "Timing
# Adjustable" as EN 301 549 11.2.2.1 takes it over): CLEAR, which no choice uses; in a typed answer it also
# clears what was typed. docs/accessibility.md.
MORE_TIME_KEY = "CLEAR"


class Panel(Protocol):
    def show(self, screen: str, **fields: Any) -> None: ...
    def flush_keys(self) -> None: ...
    def read_key(self, timeout: float) -> str | None: ...
    def set_language(self, code: str) -> None: ...
    @property
    def languages(self) -> tuple[str, ...]: ...


class PinPad(Protocol):
    def read_pin_block(self, pan: str, timeout: float, on_digits: Callable[[int], None] = ...) -> bytes: ...
    def read_dukpt_pin_block(self, pan: str, timeout: float, on_digits: Callable[[int], None] = ..., *,
                             fmt: str = ...) -> tuple[bytes, bytes]: ...
    def read_offline_pin(self, timeout: float, on_digits: Callable[[int], None] = ...) -> bytearray: ...


class StripeReader(Protocol):
    def wait_swipe(self, timeout: float) -> Track2 | None: ...
    def flush(self) -> None: ...


class PanelCardholder:
    """timeout: seconds per prompt; more_time: seconds MORE_TIME_KEY adds to a prompt (the time left is
    capped at timeout + more_time, however often it is pressed). While a cardholder is served (serving()),
    pump followers' status screens stay off the panel."""

    def __init__(self, panel: Panel, pinpad: PinPad, stripes: StripeReader | None, *, timeout: float,
                 home: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, more_time: float = 30.0) -> None:
        self.panel, self.pinpad, self.stripes = panel, pinpad, stripes
        self.timeout, self.home, self._clock, self._sleep = timeout, home, clock, sleep
        self.more_time = more_time
        self._serving = threading.Event()

    # -- the screen ----------------------------------------------------------------------------------
    @property
    def languages(self) -> tuple[str, ...]:
        return self.panel.languages

    def show(self, screen: Screen, **fields: Any) -> None:
        self.panel.show(screen, **fields)

    def notice(self, screen: Screen, seconds: float, **fields: Any) -> None:
        """A screen the cardholder must have time to read before the next one replaces it."""
        self.panel.show(screen, **fields)
        self._sleep(seconds)

    def status(self, screen: Screen, **fields: Any) -> None:
        if not self._serving.is_set():
            self.panel.show(screen, **fields)

    def set_language(self, code: str) -> None:
        self.panel.set_language(code)

    def begin(self) -> None:
        """A cardholder is at the terminal: back to the terminal's language, no stale keys or swipes."""
        self._serving.set()
        self.panel.set_language(self.home)

    def end(self) -> None:
        self.panel.set_language(self.home)
        if self.stripes is not None:
            self.stripes.flush()       # a swipe made during this sale must not start another
        self._serving.clear()

    # -- questions -----------------------------------------------------------------------------------
    def _extended(self, deadline: float) -> float:
        """The prompt's deadline after MORE_TIME_KEY; a speaking panel says so."""
        now = self._clock()
        said = getattr(self.panel, "more_time", None)
        if callable(said):
            said()
        return now + min(deadline - now + self.more_time, self.timeout + self.more_time)

    def _keys(self) -> Iterator[str]:
        """Keys until the prompt's deadline; CANCEL ends the prompt, MORE_TIME_KEY extends it."""
        deadline = self._clock() + self.timeout
        while self._clock() < deadline:
            key = self.panel.read_key(0.25)
            if key == "CANCEL":
                raise SaleCancelled("cancelled")
            if key == MORE_TIME_KEY:
                deadline = self._extended(deadline)
            if key is not None:
                yield key
        raise SaleCancelled("prompt timed out")

    def choose_pump(self, free: Sequence[int]) -> int:
        self.panel.flush_keys()
        self.panel.show(Screen.SELECT_PUMP, pumps=",".join(map(str, free)))
        for key in self._keys():
            if key.isdigit() and int(key) in free:
                return int(key)
        raise SaleCancelled("no pump chosen")      # unreachable: _keys raises at its deadline

    def choose(self, options: Sequence[str]) -> int:
        self.panel.flush_keys()
        self.panel.show(Screen.CHOOSE_APP, apps="  ".join(f"{i} {o}" for i, o in enumerate(options, 1)))
        for key in self._keys():
            if key == "ENTER" and len(options) == 1:
                return 0
            if key.isdigit() and 1 <= int(key) <= len(options):
                return int(key) - 1
        raise SaleCancelled("nothing chosen")

    def ask(self, question: Question) -> str:
        answer = ""
        self.panel.flush_keys()
        self.panel.show(Screen.QUESTION, question=question.id, answer="")
        for key in self._keys():
            if key.isdigit() and len(answer) < question.max_len:
                answer += key
            elif key == "CLEAR":
                answer = ""
            elif key == "ENTER" and len(answer) >= question.min_len:
                return answer
            self.panel.show(Screen.QUESTION, question=question.id, answer=answer)
        raise SaleCancelled("no answer")

    def _stars(self, screen: Screen) -> Callable[[int], None]:
        return lambda n: self.panel.show(screen, stars="*" * n)

    def pin_block(self, pan: str) -> bytes:
        self.panel.flush_keys()     # keys pressed before the prompt are not PIN digits
        self.panel.show(Screen.ENTER_PIN, stars="")
        try:
            return self.pinpad.read_pin_block(pan, self.timeout, self._stars(Screen.ENTER_PIN))
        except PinPadError as exc:
            raise SaleCancelled("PIN entry ended") from exc

    def dukpt_pin_block(self, pan: str, *, fmt: str = PIN_ISO0_TDEA2) -> tuple[bytes, bytes]:
        """fmt: the PIN block the acquirer's dialect carries (contracts.iso8583_dialect)."""
        self.panel.flush_keys()
        self.panel.show(Screen.ENTER_PIN, stars="")
        try:
            return self.pinpad.read_dukpt_pin_block(pan, self.timeout, self._stars(Screen.ENTER_PIN), fmt=fmt)
        except PinPadError as exc:
            raise SaleCancelled("PIN entry ended") from exc

    def offline_pin(self, last_try: bool) -> bytearray:
        screen = Screen.ENTER_PIN_LAST if last_try else Screen.ENTER_PIN
        self.panel.flush_keys()
        self.panel.show(screen, stars="")
        try:
            block = self.pinpad.read_offline_pin(self.timeout, self._stars(screen))
        except PinPadError as exc:
            raise SaleCancelled("PIN entry ended") from exc
        self.panel.show(Screen.PROCESSING)
        return block

    def swipe(self) -> Track2:
        """Ask for a swipe; a garbled one raises CardError."""
        if self.stripes is None:
            raise CardError("no stripe reader fitted")
        self.stripes.flush()
        self.panel.flush_keys()
        self.panel.show(Screen.SWIPE_CARD)
        deadline = self._clock() + self.timeout
        while self._clock() < deadline:
            key = self.panel.read_key(0.05)
            if key == "CANCEL":
                raise SaleCancelled("swipe cancelled")
            if key == MORE_TIME_KEY:
                deadline = self._extended(deadline)
            track = self.stripes.wait_swipe(0.25)
            if track is not None:
                return track
        raise SaleCancelled("no swipe")
