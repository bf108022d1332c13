"""A panel that speaks: wraps the terminal's panel, says each screen on the headphone output while speech is
on, and watches the keys for the gesture that switches speech on and off (docs/accessibility.md).

The gesture is CLEAR pressed three times within 2 s while an idle screen shows (welcome, bank cards only,
offline). No sale and no PIN entry is under way then and CLEAR does nothing on those screens, so the gesture
cannot take a PIN digit or change a sale. Speech announces itself and repeats the current screen, then stays
on for the session: it goes off when an idle screen returns after a sale, or with the gesture again.

Every key passes through one reader thread here, because on the idle screen nobody else reads keys.
What is said comes from ui.speech, which never speaks a PIN digit or a card number.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ui.speech import IDLE_SCREENS, phrase, update, utterance

__all__ = ["GESTURE_KEY", "GESTURE_PRESSES", "GESTURE_WINDOW", "SpeakingPanel"]

GESTURE_KEY, GESTURE_PRESSES, GESTURE_WINDOW = "CLEAR", 3, 2.0
# How long one read of the inner panel waits: a prompt's flush waits for the read in progress, so this
# is added to every prompt (50 ms made a fleet sale's three prompts cost 150 ms; benchmarks/sale_latency.py)
READ_SLICE = 0.005


class _Panel(Protocol):
    @property
    def languages(self) -> tuple[str, ...]: ...
    def show(self, screen: str, **fields: Any) -> None: ...
    def set_language(self, code: str) -> None: ...
    def read_key(self, timeout: float) -> str | None: ...
    def flush_keys(self) -> None: ...
    def close(self) -> None: ...


class _Speaker(Protocol):
    def say(self, text: str, language: str, *, interrupt: bool = True) -> None: ...
    def close(self) -> None: ...


class SpeakingPanel:
    """Panel protocol (drivers.panel.Panel) around `inner`; speech starts off."""

    def __init__(self, inner: _Panel, speaker: _Speaker, *, language: str = "en",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.speaker, self._clock = inner, speaker, clock
        self.language = language.strip().lower()
        self.speaking = False
        self._lock = threading.Lock()
        self._screen: str | None = None
        self._fields: dict[str, Any] = {}
        self._in_sale = False                 # a screen other than idle was shown since speech went on
        self._presses: collections.deque[float] = collections.deque()
        self._keys: queue.Queue[str] = queue.Queue()
        self._reading = threading.Lock()      # held while the key reader takes a key from the panel
        self._flushing = threading.Event()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_keys, name="panel-keys", daemon=True)
        self._reader.start()

    # -- Panel ------------------------------------------------------------------------------------------
    @property
    def languages(self) -> tuple[str, ...]:
        return self.inner.languages

    def set_language(self, code: str) -> None:
        self.inner.set_language(code)
        with self._lock:
            self.language = code.strip().lower()

    def show(self, screen: str, **fields: Any) -> None:
        # the screen is known here before it is shown, so a key pressed on it (a CLEAR in a PIN) is never
        # taken for the gesture of the screen before
        with self._lock:
            again = screen == self._screen
            self._screen, self._fields = screen, dict(fields)
        self.inner.show(screen, **fields)
        with self._lock:
            if not self.speaking or screen != self._screen:
                return
            if screen in IDLE_SCREENS and self._in_sale:     # the session ends with the sale
                self.speaking = self._in_sale = False
                return
            self._in_sale |= screen not in IDLE_SCREENS
            text = update(screen, self.language, **fields) if again else utterance(screen, self.language,
                                                                                    **fields)
            if text:
                self.speaker.say(text, self.language)

    def read_key(self, timeout: float) -> str | None:
        try:
            return self._keys.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def flush_keys(self) -> None:
        """Keys pressed before now are dropped: the inner panel's, those queued here, and one the key
        reader is taking at this moment (the flush waits for its read, at most READ_SLICE)."""
        self._flushing.set()
        try:
            with self._reading:
                self.inner.flush_keys()
                while True:
                    try:
                        self._keys.get_nowait()
                    except queue.Empty:
                        break
        finally:
            self._flushing.clear()

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self.inner.close()
        self.speaker.close()

    def __getattr__(self, name: str) -> Any:
        """Anything else the panel offers (a theme switch, say) is the inner panel's."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- accessibility ------------------------------------------------------------------------------------
    def more_time(self) -> None:
        """The cardholder port extended the current prompt: say so, and say the prompt again (EN 301 549
        5.1.3.4: speech the user can repeat)."""
        with self._lock:
            if self.speaking:
                again = utterance(self._screen, self.language, **self._fields) if self._screen else ""
                self.speaker.say(f"{phrase('time_added', self.language)} {again}".strip(), self.language)

    def time_short(self) -> None:
        """The current prompt times out soon: say so after what is being said."""
        with self._lock:
            if self.speaking:
                self.speaker.say(phrase("time_short", self.language), self.language, interrupt=False)

    def switch(self, on: bool) -> None:
        """Speech on (announces itself, then the current screen) or off (says so, then is silent)."""
        with self._lock:
            self._switch(on)

    def _switch(self, on: bool) -> None:
        self.speaking, self._in_sale = on, False
        if not on:
            self.speaker.say(phrase("off", self.language), self.language)
            return
        text = phrase("on", self.language)
        if self._screen is not None:
            text += " " + utterance(self._screen, self.language, **self._fields)
        self.speaker.say(text, self.language)

    def _gesture(self, key: str) -> bool:
        """True when the key belongs to the gesture (and is not handed on)."""
        with self._lock:
            if key != GESTURE_KEY or self._screen not in IDLE_SCREENS:
                self._presses.clear()
                return False
            now = self._clock()
            self._presses.append(now)
            while self._presses and now - self._presses[0] > GESTURE_WINDOW:
                self._presses.popleft()
            if len(self._presses) >= GESTURE_PRESSES:
                self._presses.clear()
                self._switch(not self.speaking)
            return True

    def _read_keys(self) -> None:
        while not self._closed.is_set():
            if self._flushing.is_set():       # let a flush in between two reads
                time.sleep(0.001)
                continue
            with self._reading:
                key = self.inner.read_key(READ_SLICE)
                if key is not None and not self._gesture(key):
                    self._keys.put(key)
