"""The terminal's texts: one gettext catalogue per language (ui/locales/<lang>.po), msgid a stable key.

English (en.po) is the reference: every other catalogue has the same keys with the same {fields}
(tests/test_ui_catalog.py). A key missing in a language shows English; an unknown language shows English.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import Any

from babel import Locale
from babel.messages.pofile import read_po

from contracts.errors import ConfigError

__all__ = ["LANGUAGES", "LOCALES", "catalogue", "fields_of", "has", "is_rtl", "language_of", "text"]

LOCALES = Path(__file__).with_name("locales")

# The order of the language choice: English first, then the others as the issue names them.
_ORDER = ("en", "de", "fr", "ru", "uk", "es", "fa")


def _found() -> tuple[str, ...]:
    present = {p.stem for p in LOCALES.glob("*.po")}
    return tuple(lang for lang in _ORDER if lang in present) + tuple(sorted(present - set(_ORDER)))


LANGUAGES: tuple[str, ...] = _found()   # ISO 639-1 codes, as in the card's tag 5F2D


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    """Key -> text of one language's catalogue (empty texts left out, so English shows instead)."""
    path = LOCALES / f"{lang}.po"
    try:
        with path.open("rb") as f:
            cat = read_po(f, locale=lang)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"screen texts for {lang!r} unreadable: {exc}", key="ui.locales") from exc
    return {str(m.id): str(m.string) for m in cat if m.id and isinstance(m.string, str) and m.string}


def language_of(code: str | None) -> str:
    """A catalogue language for a code such as the card's 5F2D ("DE", "fr"); English when there is none."""
    lang = (code or "").strip().lower()
    return lang if lang in LANGUAGES else "en"


def has(lang: str, key: str) -> bool:
    return key in catalogue(language_of(lang)) or key in catalogue("en")


def text(lang: str, key: str, /, **fields: Any) -> str:
    """The text of key in lang with its {fields} filled in (one not passed shows empty); English when the
    language lacks the key.

    An unknown key is a ConfigError: a screen asked for a text no catalogue has.
    """
    found = catalogue(language_of(lang)).get(key)
    if found is None:
        found = catalogue("en").get(key)
    if found is None:
        raise ConfigError(f"no screen text for key {key!r}", key="ui.locales")
    return found.format_map(_Fields(fields)) if "{" in found else found


class _Fields(dict[str, Any]):
    """A field the caller did not pass shows empty rather than stopping the sale's screen."""

    def __missing__(self, key: str) -> str:
        return ""


def fields_of(message: str) -> set[str]:
    """The {names} a message fills in."""
    return {name for _, name, _, _ in string.Formatter().parse(message) if name}


@functools.cache
def is_rtl(lang: str) -> bool:
    """Whether the language is written right to left (CLDR's character order, via Babel)."""
    return bool(Locale.parse(language_of(lang)).character_order == "right-to-left")
