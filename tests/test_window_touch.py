"""A click on the terminal's screen in the simulator window is a touch on the device's display: the option
drawn under it is pressed (hostsim.window through ui.draw's key_at). Fakes: tests/test_window.py's."""

from __future__ import annotations

import pygame

from hostsim.window import SIZE, SimulatorWindow
from tests.test_window import FakeSim, dummy_video, sim, window  # noqa: F401  (pytest fixtures)
from ui.views import build


def test_a_click_on_an_option_presses_its_key(window: SimulatorWindow, sim: FakeSim) -> None:  # noqa: F811
    view = build("choose_product", "en", products=[("Diesel", 1659), ("Super 95", 1789)], currency="EUR")
    sim.panel.current = {"screen": view.screen, "lines": list(view.plain_lines()), "fields": {},
                         "view": view.to_doc()}
    window.draw(pygame.Surface(SIZE))
    drawing = window.terminal_drawing
    assert drawing is not None
    keys = {key: rect for key, rect in drawing.options}
    assert window.handle_click(keys["2"].center) is None       # no window button: a touch on the screen
    assert sim.panel.pressed == ["2"]
    window.handle_click((window.screen_rect.left + 2, window.screen_rect.top + 2))   # on no option
    assert sim.panel.pressed == ["2"]
