"""The terminal's own screen and keys on the device (a Pi with a 800x480 touch display and a USB keypad),
via pygame. Screens are Views drawn by ui.draw; a touch on an option and the function keys F1..F4 beside
the screen send the option's key, as if its digit were pressed.

pygame (SDL) wants one thread at a time: show() draws and read_key() pumps events, both under one lock.
"""

from __future__ import annotations

import collections
import os
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

__all__ = ["PygamePanel", "open_pygame_panel", "panel_key"]

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
        self._lock = threading.Lock()
        self._keys: collections.deque[str] = collections.deque()
        self._view: View | None = None
        self._drawing: Drawing | None = None
        self._closed = False
        try:
            pygame.display.init()
            pygame.font.init()
            flags = pygame.FULLSCREEN if fullscreen else 0
            self._surface = pygame.display.set_mode(size, flags)
            pygame.display.set_caption("forecourt terminal")
            if fullscreen:
                pygame.mouse.set_visible(False)
        except pygame.error as exc:
            raise ConfigError(f"no display for the pygame panel: {exc}", key="devices.panel") from exc

    def show(self, screen: str, **fields: Any) -> None:
        view = self.view(screen, **fields)
        with self._lock:
            self._view = view
            self._draw()

    def set_theme(self, name: str) -> None:
        """normal or high_contrast; the current screen is drawn again in it."""
        theme = _theme(name)
        with self._lock:
            self.theme = theme
            self._draw()

    @property
    def drawing(self) -> Drawing | None:
        """The last screen drawn: its options' places and its texts."""
        return self._drawing

    def read_key(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                if not self._keys and not self._closed:
                    self._pump()
                if self._keys:
                    return self._keys.popleft()
            if self._closed or time.monotonic() >= deadline:
                return None
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def flush_keys(self) -> None:
        with self._lock:
            if not self._closed:
                self._pump()
            self._keys.clear()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                pygame.display.quit()

    # -- under the lock ------------------------------------------------------------------------------
    def _draw(self) -> None:
        if self._closed or self._view is None:
            return
        self._drawing = draw_view(self._surface, self._view, self.theme)
        pygame.display.flip()

    def _pump(self) -> None:
        for event in pygame.event.get():
            if event.type == pygame.KEYDOWN:
                key = panel_key(event.key) or self._function_key(event.key)
                if key is not None:
                    self._keys.append(key)
            elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1 and self._drawing is not None:
                touched = self._drawing.key_at(event.pos)      # SDL turns a touch into a left click
                if touched is not None and touched in KEYS:
                    self._keys.append(touched)
            elif event.type in (pygame.VIDEOEXPOSE, getattr(pygame, "WINDOWEXPOSED", -1)):
                self._draw()


    def _function_key(self, key: int) -> str | None:
        """F1..F4: the key of the option beside it on the current screen."""
        number = _FKEYS.get(key)
        option = self._view.option_for(number) if number and self._view is not None else None
        return option.key if option is not None and option.key in KEYS else None


def open_pygame_panel(url: DeviceUrl, *, language: str = "en") -> PygamePanel:
    """pygame://[?theme=high_contrast]: the device's own screen and keypad."""
    return PygamePanel(language=language, theme=url.option("theme", "normal"))
