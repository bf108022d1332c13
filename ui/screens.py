"""The terminal's screens as lines of text, by screen id and language (the View of ui.views, flattened).

Texts live in the catalogues ui/locales/<lang>.po; this module keeps the older line-based entry point.
"""

from __future__ import annotations

from typing import Any

from contracts.screens import Screen
from ui.catalog import LANGUAGES
from ui.views import build

__all__ = ["LANGUAGES", "render"]


def render(screen: Screen | str, language: str = "en", **fields: Any) -> tuple[str, ...]:
    """Lines of a screen with its fields filled in, top to bottom; unknown language falls back to English.

    A reason field (a DeclineReason or its code; legacy codes such as "expired_card" too), a question and
    a card field become their texts.
    """
    return build(screen, language, **fields).plain_lines()
