"""Screen language from the card's Language Preference 5F2D (Book 1 11.3.4, Book 4 11.1)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["choose_language"]


def choose_language(preference: str | bytes | None, available: Sequence[str],
                    default: str | None = None) -> str:
    """The first of the card's ISO 639-1 codes (2 letters each, up to 4, in order) the UI offers;
    otherwise default, or the UI's first language."""
    if not available:
        raise ValueError("the UI offers no language")
    if isinstance(preference, bytes):
        preference = preference.decode("ascii", "replace")
    offered = {code.lower(): code for code in available}
    text = (preference or "").lower()
    for i in range(0, min(len(text), 8) - 1, 2):
        hit = offered.get(text[i:i + 2])
        if hit is not None:
            return hit
    return default if default is not None and default in available else available[0]
