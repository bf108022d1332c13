"""The screen's fonts and text shaping: one family with Latin, Cyrillic and Arabic-script glyphs (DejaVu Sans,
Debian fonts-dejavu-core), and Persian shaped and put in visual order before SDL_ttf draws it.

SDL_ttf draws code points left to right as they come; Arabic script needs its contextual forms
(arabic-reshaper, Unicode presentation forms) and the Unicode Bidirectional Algorithm's visual order
(python-bidi, UAX #9), so the shaping is done here and every build of pygame draws the same pixels.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from pathlib import Path

from contracts.errors import ConfigError

__all__ = ["FONT_DIRS", "font_path", "shape"]

# where Debian, Fedora and Arch put DejaVu; FORECOURT_FONT_DIR first when set
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu-sans-fonts",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
)
_FILES = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf"}


@functools.cache
def font_path(weight: str = "regular") -> str:
    """The font file of a weight (regular, bold); a ConfigError saying what to install when it is absent."""
    name = _FILES[weight]
    dirs = ([os.environ["FORECOURT_FONT_DIR"]] if os.environ.get("FORECOURT_FONT_DIR") else []) + list(
        FONT_DIRS
    )
    for folder in dirs:
        path = Path(folder) / name
        if path.is_file():
            return str(path)
    raise ConfigError(
        f"screen font {name} not found in {', '.join(dirs)}: install fonts-dejavu-core "
        "(Debian) or set FORECOURT_FONT_DIR",
        key="ui.font",
    )


def _has_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


@functools.lru_cache(maxsize=4096)
def shape(text: str, rtl: bool = False) -> str:
    """Text as SDL_ttf must draw it, left to right: Arabic script joined and in visual order; the invisible
    direction marks (Unicode format characters, e.g. Babel's U+200E/U+200F) left out: no font draws them."""
    if rtl or _has_rtl(text):
        import arabic_reshaper  # type: ignore[import-untyped]
        from bidi import get_display  # type: ignore[import-untyped]

        text = get_display(arabic_reshaper.reshape(text), base_dir="R" if rtl else "L")
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
