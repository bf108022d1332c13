"""Drawing Views (ui.draw): sizes, themes, right to left, touch targets, function keys; the pygame panel."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame

from contracts.errors import ConfigError
from ui.draw import HIGH_CONTRAST, NORMAL, draw_view
from ui.fonts import font_path, shape
from ui.view import Figure, Option, Tone, View
from ui.views import build

SIZES = [(800, 480), (1024, 600), (1280, 800)]
PERSIAN = View(screen="filling", language="fa", rtl=True, title="پمپ ۲", lines=("سوخت‌گیری",),
               figures=(Figure("litres", "لیتر", "۱۲٫۳۴ L"),), options=(Option("1", "فارسی"),),
               hint="نازل را آویزان کنید", tone=Tone.WARNING, tone_word="هشدار")


@pytest.fixture(autouse=True)
def display() -> Iterator[None]:
    pygame.display.init()
    pygame.font.init()
    yield
    pygame.display.quit()


@pytest.mark.parametrize("size", SIZES)
def test_options_are_touch_targets_that_fill_the_screen_at_every_size(size: tuple[int, int]) -> None:
    surface = pygame.Surface(size)
    drawing = draw_view(surface, build("select_pump", "en", pumps="1,2,3"))
    assert [key for key, _ in drawing.options] == ["1", "2", "3"]
    for key, rect in drawing.options:
        assert drawing.key_at(rect.center) == key
        assert surface.get_rect().contains(rect) and rect.h >= 48 * size[1] / 480 * 0.9
    assert drawing.key_at((5, 5)) is None and not drawing.clipped()


def test_a_touch_maps_through_the_origin_of_a_screen_inside_a_window() -> None:
    window = pygame.Surface((1200, 700))
    area = pygame.Rect(100, 50, 800, 480)
    drawing = draw_view(window.subsurface(area), build("choose_language", "en"), origin=area.topleft)
    key, rect = drawing.options[1]
    assert area.contains(rect) and drawing.key_at(rect.center) == key == "2"


def test_the_high_contrast_theme_is_black_and_white_with_thicker_edges() -> None:
    plain, contrast = pygame.Surface((800, 480)), pygame.Surface((800, 480))
    draw_view(plain, build("idle", "en"), NORMAL)
    draw_view(contrast, build("idle", "en"), HIGH_CONTRAST)
    assert contrast.get_at((400, 300))[:3] == (0, 0, 0) and plain.get_at((400, 300))[:3] == NORMAL.background
    assert HIGH_CONTRAST.border_width > NORMAL.border_width


def test_persian_is_shaped_and_aligned_right() -> None:
    drawing = draw_view(pygame.Surface((800, 480)), PERSIAN)
    title = next(p for p in drawing.texts if p.text == PERSIAN.title)
    assert title.area.right == title.box.right and title.area.left > title.box.left
    assert title.drawn == shape(PERSIAN.title, True) != PERSIAN.title
    assert "\ufb57" in title.drawn      # PEH in its final form: joined, in visual order (last char first)
    line = next(p for p in drawing.texts if p.text == PERSIAN.lines[0])
    assert line.area.right == line.box.right and not drawing.clipped()


def test_latin_text_aligns_left_and_is_not_reshaped() -> None:
    drawing = draw_view(pygame.Surface((800, 480)), build("card_error", "de"))
    body = next(p for p in drawing.texts if p.text == "Die Karte ist nicht lesbar")
    assert body.drawn == body.text and body.area.left == body.box.left


def test_a_text_too_long_for_its_box_is_reported_clipped() -> None:
    view = View(screen="idle", language="en", rtl=False, title="x", lines=("W" * 400,))
    assert [p.text for p in draw_view(pygame.Surface((800, 480)), view).clipped()] == ["W" * 400]


def test_a_missing_font_is_a_config_error_that_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ui.fonts.FONT_DIRS", ("/nonexistent",))
    font_path.cache_clear()
    try:
        with pytest.raises(ConfigError, match="fonts-dejavu-core"):
            font_path()
    finally:
        font_path.cache_clear()


def test_pygame_panel_maps_touch_and_function_keys_to_the_options() -> None:
    from drivers.panel.pygame_panel import PygamePanel

    panel = PygamePanel(fullscreen=False)
    try:
        panel.show("select_pump", pumps="2,4")
        drawing = panel.drawing
        assert drawing is not None
        _, rect = drawing.options[1]
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=rect.center))
        for key in (pygame.K_F1, pygame.K_F3):          # F3: no third option, nothing sent
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
        assert [panel.read_key(0.5), panel.read_key(0.5), panel.read_key(0.05)] == ["4", "2", None]
        panel.set_theme("high_contrast")
        assert pygame.display.get_surface().get_at((5, 5))[:3] == (0, 0, 0)
        with pytest.raises(ConfigError):
            panel.set_theme("neon")
    finally:
        panel.close()


def test_drawing_after_the_font_module_was_quit_and_started_again() -> None:
    draw_view(pygame.Surface((800, 480)), build("idle", "en"))
    pygame.font.quit()              # another part of the program (a window closing) quit pygame's fonts
    pygame.font.init()
    assert not draw_view(pygame.Surface((800, 480)), build("idle", "en")).clipped()


def test_pygame_panel_takes_events_while_the_sale_waits() -> None:
    """The panel's own loop drains SDL's queue without read_key being called (a sale waiting on the
    network), so the window never stops answering; the key is there at once when the sale asks."""
    import time

    from drivers.panel.pygame_panel import PygamePanel

    panel = PygamePanel(fullscreen=False)
    try:
        panel.show("authorizing")
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_7, mod=0, unicode="", scancode=0))
        deadline = time.monotonic() + 2
        while pygame.event.peek(pygame.KEYDOWN) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pygame.event.peek(pygame.KEYDOWN)
        time.sleep(0.1)
        assert panel.read_key(0) == "7"
    finally:
        panel.close()


def test_a_pygame_panel_url_with_an_unknown_theme_is_a_config_error() -> None:
    from drivers.panel import open_panel

    with pytest.raises(ConfigError, match="theme"):
        open_panel("pygame://?theme=neon")
