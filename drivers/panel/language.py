"""The screen-language part both panels share: the languages they can show, the one they show now, and the
View (ui.views) of a screen in it."""

from __future__ import annotations

from typing import Any

from ui.catalog import language_of
from ui.screens import LANGUAGES
from ui.view import View
from ui.views import build

__all__ = ["ScreenLanguage"]


class ScreenLanguage:
    language: str

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES

    def set_language(self, code: str) -> None:
        """5F2D codes may come in upper case; an unknown code shows English."""
        self.language = language_of(code)

    def view(self, screen: str, **fields: Any) -> View:
        return build(screen, self.language, **fields)

    def render(self, screen: str, **fields: Any) -> tuple[str, ...]:
        return self.view(screen, **fields).plain_lines()
