"""The terminal's own screen and keys on the device (a Pi with a 800x480 touch display and a USB keypad),
via pygame. Screens are Views drawn by ui.draw; a touch on an option and the function keys F1..F4 beside
the screen send the option's key, as if its digit were pressed.

The screen runs its own loop in a thread that owns SDL (SDL wants its video and events in the thread that
started them): it takes events and redraws while the sale waits on a card, a pump or the network, so the
display never freezes; show() hands it a View and returns once it is drawn.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame

from contracts.errors import ConfigError
from drivers.panel import KEYS
from drivers.panel.language import ScreenLanguage
from drivers.url import DeviceUrl
from ui.draw import THEMES, Drawing, Theme, draw_view
from ui.view import View

__all__ = ["FRAME", "PygamePanel", "open_pygame_panel", "panel_key"]

log = logging.getLogger(__name__)

FRAME = 1 / 30          # the loop's period: events are taken and the screen redrawn at most this late

_KEYMAP: dict[int, str] = {
    **{getattr(pygame, f"K_{d}"): str(d) for d in range(10)},
    **{getattr(pygame, f"K_KP{d}"): str(d) for d in range(10)},
    pygame.K_RETURN: "ENTER", pygame.K_KP_ENTER: "ENTER",
    pygame.K_ESCAPE: "CANCEL",
    pygame.K_BACKSPACE: "CLEAR", pygame.K_DELETE: "CLEAR",
}
_FKEYS = {pygame.K_F1: 1, pygame.K_F2: 2, pygame.K_F3: 3, pygame.K_F4: 4}


def _theme(name: str) -> Theme:
    if name not in THEMES:
        raise ConfigError(f"unknown panel theme {name!r}: one of {', '.join(THEMES)}", key="devices.panel")
    return THEMES[name]


def panel_key(key: int) -> str | None:
    """The panel key for a pygame key code: digits, Return -> ENTER, Escape -> CANCEL, Backspace -> CLEAR."""
    name = _KEYMAP.get(key)
    return name if name in KEYS else None


class PygamePanel(ScreenLanguage):
    """Panel protocol on a pygame window: fullscreen 800x480 on the device, windowed for a bench.

    theme: normal or high_contrast (set_theme switches it at run time)."""

    def __init__(self, *, language: str = "en", size: tuple[int, int] = (800, 480),
                 fullscreen: bool = True, theme: str = "normal") -> None:
        self.set_language(language)
        self.theme = _theme(theme)
        self._cond = threading.Condition()
        self._keys: collections.deque[str] = collections.deque()
        self._inbox: queue.SimpleQueue[tuple[View | None, Theme, threading.Event]] = queue.SimpleQueue()
        self._view: View | None = None
        self._drawing: Drawing | None = None
        self._closed = threading.Event()
        started: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, args=(size, fullscreen, started), daemon=True,
                                        name="pygame-panel")
        self._thread.start()
        failure = started.get()
        if failure is not None:
            raise ConfigError(f"no display for the pygame panel: {failure}", key="devices.panel") from failure

    # -- the sale's side ---------------------------------------------------------------------------------
    def show(self, screen: str, **fields: Any) -> None:
        self._hand(self.view(screen, **fields), self.theme)

    def set_theme(self, name: str) -> None:
        """normal or high_contrast; the current screen is drawn again in it."""
        self.theme = _theme(name)
        self._hand(None, self.theme)

    @property
    def drawing(self) -> Drawing | None:
        """The last screen drawn: its options' places and its texts."""
        return self._drawing

    def read_key(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._keys:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed.is_set():
                    return None
                self._cond.wait(left)
            return self._keys.popleft()

    def flush_keys(self) -> None:
        """Drop keys pressed before now, including those SDL has not handed over yet."""
        done = threading.Event()
        if not self._closed.is_set():
            self._inbox.put((None, self.theme, done))   # the loop takes pending events before it answers
            done.wait(1.0)
        with self._cond:
            self._keys.clear()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._thread.join(2.0)
        with self._cond:
            self._cond.notify_all()

    def _hand(self, view: View | None, theme: Theme) -> None:
        if self._closed.is_set():
            return
        done = threading.Event()
        self._inbox.put((view, theme, done))
        done.wait(1.0)

    # -- the loop's side: the only thread that touches SDL ---------------------------------------------
    def _run(self, size: tuple[int, int], fullscreen: bool,
             started: queue.SimpleQueue[BaseException | None]) -> None:
        try:
            pygame.display.init()
            pygame.font.init()
            surface = pygame.display.set_mode(size, pygame.FULLSCREEN if fullscreen else 0)
            pygame.display.set_caption("forecourt terminal")
            if fullscreen:
                pygame.mouse.set_visible(False)
        except pygame.error as exc:
            started.put(exc)
            return
        started.put(None)
        theme = self.theme
        try:
            while not self._closed.is_set():
                redraw = self._events()
                try:
                    view, theme, done = self._inbox.get(timeout=FRAME)
                except queue.Empty:
                    done = None
                else:                       # a new screen, a theme, or a flush: events first, then draw
                    self._events()
                    self._view = view or self._view
                    redraw = True
                if redraw and self._view is not None:
                    try:
                        self._drawing = draw_view(surface, self._view, theme)
                        pygame.display.flip()
                    except (pygame.error, ValueError) as exc:    # a bad screen must not end the loop
                        log.error("panel: screen not drawn", extra={"screen": self._view.screen,
                                                                    "error": str(exc)})
                if done is not None:
                    done.set()
        finally:
            pygame.display.quit()

    def _events(self) -> bool:
        """Take SDL's events: keys and touches become panel keys; True when the screen must be redrawn."""
        redraw = False
        for event in pygame.event.get():
            key: str | None = None
            if event.type == pygame.KEYDOWN:
                key = panel_key(event.key) or self._function_key(event.key)
            elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1 and self._drawing is not None:
                key = self._drawing.key_at(event.pos)          # SDL turns a touch into a left click
            elif event.type in (pygame.VIDEOEXPOSE, getattr(pygame, "WINDOWEXPOSED", -1)):
                redraw = True
            if key is not None and key in KEYS:
                with self._cond:
                    self._keys.append(key)
                    self._cond.notify_all()
        return redraw

    def _function_key(self, key: int) -> str | None:
        """F1..F4: the key of the option beside it on the current screen."""
        number = _FKEYS.get(key)
        option = self._view.option_for(number) if number and self._view is not None else None
        return option.key if option is not None else None


def open_pygame_panel(url: DeviceUrl, *, language: str = "en") -> PygamePanel:
    """pygame://[?theme=high_contrast]: the device's own screen and keypad."""
    return PygamePanel(language=language, theme=url.option("theme", "normal"))
