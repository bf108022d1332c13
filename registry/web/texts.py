"""The web pages' texts: registry/web/texts/<area>.json, each {"area.key": {"en": ..., "ru": ..., "es": ...}}.
Every key has every language (tests/test_web_texts.py); a key asked for and not there is an error, never a
silent fallback. Values are str.format templates ("{count} cards")."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from registry.web.auth import LANGUAGES

__all__ = ["LANGUAGES", "MissingText", "catalogue", "negotiate", "translator"]

TEXTS = Path(__file__).with_name("texts")


class MissingText(KeyError):
    pass


@cache
def catalogue() -> Mapping[str, Mapping[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(TEXTS.glob("*.json")):
        for key, by_language in json.loads(path.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"text {key} is in two catalogues ({path.name})")
            merged[key] = by_language
    return merged


class translator:  # called like a function in templates: t("key")
    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"

    def __call__(self, key: str, **values: object) -> str:
        try:
            text = catalogue()[key][self.language]
        except KeyError:
            raise MissingText(key) from None
        return text.format(**values) if values else text


def negotiate(asked: str | None, accept_language: str | None) -> str:
    """?lang= or the cookie first, then the browser's Accept-Language (its first supported language)."""
    if asked in LANGUAGES:
        return asked
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"
