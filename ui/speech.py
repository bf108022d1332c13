"""What the terminal says for a screen, in the screen's language: pure text, no I/O.

The spoken form of a screen is its title, figures, options with their key numbers ("for pump 2, press 2")
and hint, in that order. Two rules hold for every screen: a PIN digit is never spoken (PIN screens say only
how many digits are in), and a card number is never spoken (a run of ten or more digits is dropped; a masked
number keeps only its visible last digits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ui.catalog import LANGUAGES, text
from ui.view import Tone, View
from ui.views import build

__all__ = ["EXTENDABLE", "IDLE_SCREENS", "PIN_SCREENS", "SECRET_FIGURES", "SPEECH_KEYS", "VOICES", "phrase",
           "update", "utterance", "voice"]

# espeak-ng voice per ISO 639-1 code (our languages, the card's tag 5F2D); names as `espeak-ng --voices`
# lists them for espeak-ng 1.51 (Debian bookworm): gmw/en, gmw/de, roa/fr, zle/ru, zle/uk, roa/es, ira/fa.
VOICES: Mapping[str, str] = {"en": "en-gb", "de": "de", "fr": "fr-fr", "ru": "ru", "uk": "uk", "es": "es",
                             "fa": "fa"}

PIN_SCREENS = frozenset({"enter_pin", "enter_pin_last", "attendant_sign_in"})   # secret entries
SECRET_FIGURES = frozenset({"pin", "code"})
IDLE_SCREENS = frozenset({"idle", "idle_bank_only", "offline"})
# prompts that wait for a key with a timeout CLEAR extends (firmware.terminal.cardholder). The PIN pad
# extends too (CLEAR with no digit entered), but there CLEAR also clears digits, so it is not announced
EXTENDABLE = frozenset({"select_pump", "choose_app", "question", "swipe_card", "choose_product",
                        "enter_preset", "choose_language"})

# Phrases only speech needs are msgids "speech.<key>" of the catalogues (on, off, digits, option, more_time,
# time_added, time_short). Keys are named as printed on them and on the screens (CLEAR, ENTER) in every
# language; espeak-ng reads a Latin-script word in the ru, uk and fa voices with its English voice
# (`espeak-ng -v ru -x CLEAR`: "(en)").
SPEECH_KEYS = ("on", "off", "digits", "option", "more_time", "time_added", "time_short")

_CARD_NUMBER = re.compile(r"\d(?:[ -]?\d){9,}")       # ten or more digits, maybe grouped: a card number
_DIGIT = re.compile(r"\d")
_EMPTY = "-"                                          # ui.views shows an empty entry as a dash


def _language(code: str) -> str:
    code = code.strip().lower()
    return code if code in LANGUAGES else "en"


def voice(language: str) -> str:
    """espeak-ng voice of a screen language; unknown codes speak English, as they render English."""
    return VOICES[_language(language)]


def phrase(which: str, language: str, **fields: Any) -> str:
    """A speech phrase (msgid speech.<which>) in the language's catalogue."""
    return text(_language(language), f"speech.{which}", **fields)


def _sentence(text: str) -> str:
    """One spoken sentence; a card number in it is dropped, masking stars are not read out."""
    text = _CARD_NUMBER.sub("", text.replace("*", "")).strip(" .…:")
    return text + "." if text else ""


def _view_parts(view: View) -> list[str]:
    """The screen in reading order: the tone's word for a warning or an error (so the news is not in
    colour alone), title, lines, figures, options with their keys, hint. A secret entry's figure (the
    PIN, an attendant's code) is said as a count of digits only."""
    lang = view.language
    parts = [view.tone_word] if view.tone in (Tone.WARNING, Tone.ERROR) and view.tone_word else []
    parts += [view.title, *view.lines]
    for figure in view.figures:
        if figure.key in SECRET_FIGURES:
            count = len(figure.value) if figure.value != _EMPTY else 0
            parts.append(phrase("digits", lang, count=count) if count else "")
        elif figure.value and figure.value != _EMPTY:
            parts.append(f"{figure.label}: {figure.value}")
    parts += [phrase("option", lang, name=o.label, key=o.key) for o in view.options]
    parts.append(view.hint)
    if view.screen in EXTENDABLE:
        parts.append(phrase("more_time", lang))
    return [s for s in map(_sentence, parts) if s]


def utterance(screen: str, language: str = "en", **fields: Any) -> str:
    """All a screen says (ui.view.View in speech order). A PIN screen's entry is reduced to stars before the
    View is built, so no digit can reach the text whatever the caller passed; it is said as a count."""
    language = _language(language)
    if screen in PIN_SCREENS:
        fields = {**fields, "stars": "*" * len(str(fields.get("stars", "")))}
    return " ".join(_view_parts(build(screen, language, **fields)))


def update(screen: str, language: str = "en", **fields: Any) -> str:
    """What to say when the screen shown is shown again with new figures: a PIN screen its count only,
    a question the answer typed so far, a filling screen nothing (the pump reports many times a second)."""
    language = _language(language)
    if screen in PIN_SCREENS:
        return phrase("digits", language, count=len(str(fields.get("stars", ""))))
    if screen == "question":
        return " ".join(_DIGIT.findall(str(fields.get("answer", ""))))
    if screen == "filling":
        return ""
    return utterance(screen, language, **fields)
