"""Screenshot tests: every screen in every language drawn (SDL dummy driver) in both themes at 800x480 and at
1024x600 and 1280x800; every text fits its box, every glyph is in the font (no tofu), Persian runs right to
left. `make screens` (ui.screenshots) writes the same pictures to docs/screens/<language>/."""

from __future__ import annotations

import functools
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame
from fontTools.ttLib import TTFont

from ui.catalog import LANGUAGES
from ui.draw import Drawing
from ui.screenshots import main, shoot, views
from ui.view import View

CASES = [((800, 480), "normal"), ((800, 480), "high_contrast"), ((1024, 600), "normal"),
         ((1280, 800), "high_contrast")]


@pytest.fixture(autouse=True, scope="module")
def display() -> Iterator[None]:
    pygame.display.init()
    pygame.font.init()
    yield
    pygame.display.quit()


@functools.cache
def cmap(path: str) -> frozenset[int]:
    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


def tofu(drawing: Drawing) -> list[tuple[str, str]]:
    """(text, character) for every drawn character its font has no glyph for."""
    return [(p.text, ch) for p in drawing.texts for ch in p.drawn
            if not ch.isspace() and unicodedata.category(ch) != "Cf" and ord(ch) not in cmap(p.font)]


@pytest.mark.parametrize(("size", "theme"), CASES, ids=[f"{w}x{h}-{t}" for (w, h), t in CASES])
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_fits_and_has_every_glyph(lang: str, size: tuple[int, int], theme: str) -> None:
    problems = []
    for view in views((lang,)):
        _, drawing = shoot(view, size, theme)
        problems += [(view.screen, "clipped", p.text, p.size) for p in drawing.clipped()]
        problems += [(view.screen, "tofu", text, f"U+{ord(ch):04X}") for text, ch in tofu(drawing)]
        assert {key for key, _ in drawing.options} == {o.key for o in view.options}
    assert not problems


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang == "fa"] or ["fa"])
def test_right_to_left_languages_read_from_the_right(lang: str) -> None:
    if lang not in LANGUAGES:
        pytest.skip("no Persian catalogue yet (ui/locales/fa.po)")
    for view in views((lang,)):
        assert view.rtl
        _, drawing = shoot(view)
        title = next(p for p in drawing.texts if p.text == view.title)
        assert title.side == "right" and title.area.right == title.box.right, view.screen
        for line in view.lines:
            assert all(p.side == "right" for p in drawing.texts if p.text in line), (view.screen, line)


def test_persian_shaped_forms_and_digits_are_all_in_the_font() -> None:
    view = View(screen="filling", language="fa", rtl=True, title="پمپ ۲", lines=("لطفاً نازل را بردارید",),
                hint="کارت خود را وارد کنید ۰۱۲۳۴۵۶۷۸۹ ‎€ ۱٬۲۳۴٫۵۰")
    _, drawing = shoot(view)
    assert not tofu(drawing) and not drawing.clipped()
    assert all(p.side in ("right", "center") for p in drawing.texts)


def test_a_glyph_the_font_lacks_is_found() -> None:
    view = View(screen="idle", language="en", rtl=False, title="\u4e2d", hint="ok")   # a CJK ideograph
    _, drawing = shoot(view)
    assert tofu(drawing) == [("\u4e2d", "\u4e2d")]


def test_make_screens_writes_one_png_per_screen_and_language(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    expected = sorted([f"{v.language}/{v.screen}.png" for v in views()]
                      + [f"high_contrast/en/{v.screen}.png" for v in views(("en",))])
    assert written == expected
    assert pygame.image.load(str(tmp_path / "en" / "idle.png")).get_size() == (800, 480)
