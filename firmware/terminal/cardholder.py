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
from firmware.sale.record import Preset

__all__ = ["CODE_KEY", "MORE_TIME_KEY", "WARN_BEFORE", "PanelCardholder"]

# The idle screen's key that asks for a paper voucher's code (when the voucher program runs): no digit,
# since digits pick a language there
CODE_KEY = "ENTER"

# The key that gives a timed prompt more time (EN 301 549 5.1.3 non-visual access, WCAG 2.2.1 "Timing
# Adjustable" as EN 301 549 11.2.2.1 takes it over): CLEAR, which no choice uses; in a typed answer it also
# clears what was typed. docs/accessibility.md.
MORE_TIME_KEY = "CLEAR"
# A prompt warns this long before it times out (at most half its time): WCAG 2.1 SC 2.2.1 "Extend" gives
# at least 20 s to ask for more; the EAA, Annex I, asks self-service terminals to warn of a timed response
# through more than one sensory channel (a speaking panel says it; the screen shows the prompt's time).
WARN_BEFORE = 20.0


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
        self._chosen: str | None = None       # the language the driver picked on the idle screen
        self._chosen_at = 0.0
        self.code_digits = 0                  # a voucher code's length; 0: CODE_KEY asks nothing
        self.code_wanted = False              # CODE_KEY was pressed on the idle screen

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
        """The card's preference (EMV 5F2D); a language the driver picked on the idle screen wins."""
        if self._chosen is None:
            self.panel.set_language(code)

    # -- the idle screen -----------------------------------------------------------------------------
    def idle_fields(self) -> dict[str, Any]:
        """What the idle screen adds for the language choice: the languages, each on its digit key."""
        return {"languages": self.languages} if len(self.languages) > 1 else {}

    def idle_key(self, timeout: float) -> bool:
        """Read a key on the idle screen: a digit shown beside a language picks it for the next sale.
        True when the language changed (the idle screen is shown again). A choice nobody used within the
        prompt's timeout lapses."""
        if self._chosen is not None and self._clock() - self._chosen_at > self.timeout:
            self._chosen = None
            self.panel.set_language(self.home)
            return True
        key = self.panel.read_key(timeout)
        if key == CODE_KEY and self.code_digits:
            self.code_wanted = True
            return True
        offered = self.idle_fields().get("languages", ())
        if key is None or not key.isdigit() or not 1 <= int(key) <= len(offered):
            return False
        self._chosen, self._chosen_at = self.languages[int(key) - 1], self._clock()
        self.panel.set_language(self._chosen)
        return True

    def idle(self) -> None:
        """Back to the idle screen after a sale: the terminal's language; the driver's choice is used up."""
        self._chosen = None
        self.panel.set_language(self.home)

    def begin(self) -> None:
        """A cardholder is at the terminal: in the language they picked or the terminal's, no stale keys
        or swipes."""
        self._serving.set()
        self.panel.set_language(self._chosen or self.home)

    def end(self) -> None:
        """The cardholder's part is over; the sale's language stays for its last screens (remove card,
        the pump's) until idle() brings the idle screen back."""
        if self.stripes is not None:
            self.stripes.flush()       # a swipe made during this sale must not start another
        self._serving.clear()

    # -- questions -----------------------------------------------------------------------------------
    def _tell(self, event: str) -> None:
        """more_time or time_short, to a panel that says them (drivers.panel.speaking); others ignore it."""
        hook = getattr(self.panel, event, None)
        if callable(hook):
            hook()

    def _keys(self) -> Iterator[str]:
        """Keys until the prompt's deadline; CANCEL ends the prompt, MORE_TIME_KEY extends it."""
        deadline = _Deadline(self)
        while deadline.running():
            key = self.panel.read_key(0.25)
            if key == "CANCEL":
                raise SaleCancelled("cancelled")
            if key == MORE_TIME_KEY:
                deadline.extend()
            if key is not None:
                yield key
        raise SaleCancelled("prompt timed out")

    def choose_pump(self, free: Sequence[int]) -> int:
        self.panel.flush_keys()
        self.panel.show(Screen.SELECT_PUMP, pumps=list(free))     # ui.views makes each an option
        for key in self._keys():
            if key.isdigit() and int(key) in free:
                return int(key)
        raise SaleCancelled("no pump chosen")      # unreachable: _keys raises at its deadline

    def choose(self, options: Sequence[str]) -> int:
        self.panel.flush_keys()
        self.panel.show(Screen.CHOOSE_APP, options=list(options))   # the labels; digit i picks options[i-1]
        for key in self._keys():
            if key == "ENTER" and len(options) == 1:
                return 0
            if key.isdigit() and 1 <= int(key) <= len(options):
                return int(key) - 1
        raise SaleCancelled("nothing chosen")

    def menu(self, screen: Screen, items: Sequence[str], **fields: Any) -> int:
        """An attendant's menu (firmware.attendant): digit i picks items[i-1], 0 the tenth; CANCEL or the
        prompt's timeout raise SaleCancelled (the attendant is signed out on inactivity)."""
        self.panel.flush_keys()
        self.panel.show(screen, items=list(items), **fields)
        for key in self._keys():
            if key.isdigit() and (int(key) or 10) <= len(items):
                return (int(key) or 10) - 1
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

    def type_code(self) -> str:
        """A voucher's code_digits digits, shown as stars and a count (the code is never on a screen, so
        never in a screen log); CLEAR starts again, ENTER takes a complete code."""
        self.code_wanted = False
        typed = ""
        self.panel.flush_keys()
        self.panel.show(Screen.ENTER_VOUCHER, stars="", digits=self.code_digits)
        for key in self._keys():
            if key.isdigit() and len(typed) < self.code_digits:
                typed += key
            elif key == "CLEAR":
                typed = ""
            elif key == "ENTER" and len(typed) == self.code_digits:
                return typed
            self.panel.show(Screen.ENTER_VOUCHER, stars="*" * len(typed), digits=self.code_digits)
        raise SaleCancelled("no code typed")

    def choose_product(self, products: Sequence[tuple[str, int]], currency: str) -> int | None:
        """A digit picks a product; ENTER leaves every granted nozzle open (the driver lifts one)."""
        self.panel.flush_keys()
        self.panel.show(Screen.CHOOSE_PRODUCT, products=list(products), currency=currency)
        for key in self._keys():
            if key == "ENTER":
                return None
            if key.isdigit() and 1 <= int(key) <= len(products):
                return int(key) - 1
        raise SaleCancelled("no product chosen")

    def enter_preset(self, limit: Preset, currency: str) -> Preset:
        """An amount (whole currency units) or litres (whole litres), as the grant limits; a digit that
        would pass the limit is not taken; ENTER with nothing (or CLEAR, then ENTER) keeps the limit."""
        typed = 0

        def show() -> None:
            if limit.kind == "amount":
                entry = {"amount_cents": typed * 100} if typed else {}
                self.panel.show(Screen.ENTER_PRESET, mode="amount", currency=currency, max_cents=limit.value,
                                **entry)
            else:
                entry = {"volume_cl": typed * 100} if typed else {}
                self.panel.show(Screen.ENTER_PRESET, mode="litres", max_cl=limit.value, **entry)

        self.panel.flush_keys()
        show()
        for key in self._keys():
            if key.isdigit() and 0 < (typed * 10 + int(key)) * 100 <= limit.value:
                typed = typed * 10 + int(key)
            elif key == "CLEAR":
                typed = 0
            elif key == "ENTER":
                return Preset(limit.kind, typed * 100) if typed else limit
            show()
        raise SaleCancelled("no preset entered")

    def _stars(self, screen: Screen, **fields: Any) -> Callable[[int], None]:
        return lambda n: self.panel.show(screen, stars="*" * n, **fields)

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

    def offline_pin(self, last_try: bool, tries: int | None = None) -> bytearray:
        """tries: the PIN tries the card has left, when known (shown on the screen)."""
        screen = Screen.ENTER_PIN_LAST if last_try else Screen.ENTER_PIN
        extra = {"tries": tries} if tries is not None and not last_try else {}
        self.panel.flush_keys()
        self.panel.show(screen, stars="", **extra)
        try:
            block = self.pinpad.read_offline_pin(self.timeout, self._stars(screen, **extra))
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
        deadline = _Deadline(self)
        while deadline.running():
            key = self.panel.read_key(0.05)
            if key == "CANCEL":
                raise SaleCancelled("swipe cancelled")
            if key == MORE_TIME_KEY:
                deadline.extend()
            track = self.stripes.wait_swipe(0.25)
            if track is not None:
                return track
        raise SaleCancelled("no swipe")


class _Deadline:
    """One prompt's deadline: extend() adds more_time (the time left capped at timeout + more_time);
    running() warns the panel once when the time left runs short."""

    def __init__(self, port: PanelCardholder) -> None:
        self.port, self.at, self.warned = port, port._clock() + port.timeout, False

    def running(self) -> bool:
        left = self.at - self.port._clock()
        if 0 < left <= min(WARN_BEFORE, self.port.timeout / 2) and not self.warned:
            self.warned = True
            self.port._tell("time_short")
        return left > 0

    def extend(self) -> None:
        port, now = self.port, self.port._clock()
        self.at = now + min(self.at - now + port.more_time, port.timeout + port.more_time)
        self.warned = False
        port._tell("more_time")
