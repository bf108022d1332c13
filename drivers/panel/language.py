"""The screen-language part both panels share: the languages they can show and the one they show now."""

from __future__ import annotations

from typing import Any

from ui.screens import LANGUAGES, render

__all__ = ["ScreenLanguage"]


class ScreenLanguage:
    language: str

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES

    def set_language(self, code: str) -> None:
        """5F2D codes may come in upper case; an unknown code renders English."""
        self.language = code.strip().lower()

    def render(self, screen: str, **fields: Any) -> tuple[str, ...]:
        return render(screen, self.language, **fields)
