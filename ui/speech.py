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

from ui.catalog import LANGUAGES, catalogue
from ui.view import Tone, View
from ui.views import build

__all__ = ["EXTENDABLE", "IDLE_SCREENS", "PIN_SCREENS", "SECRET_FIGURES", "SPEECH_TEXTS", "VOICES", "phrase",
           "update", "utterance", "voice"]

# espeak-ng voice per ISO 639-1 code (our languages, the card's tag 5F2D); names as `espeak-ng --voices`
# lists them for espeak-ng 1.51 (Debian bookworm): gmw/en, gmw/de, roa/fr, zle/ru, zle/uk, roa/es, ira/fa.
VOICES: Mapping[str, str] = {"en": "en-gb", "de": "de", "fr": "fr-fr", "ru": "ru", "uk": "uk", "es": "es",
                             "fa": "fa"}

PIN_SCREENS = frozenset({"enter_pin", "enter_pin_last", "attendant_sign_in"})   # secret entries
SECRET_FIGURES = frozenset({"pin", "code"})
IDLE_SCREENS = frozenset({"idle", "idle_bank_only", "offline"})
# prompts that wait for a key with a timeout CLEAR extends (firmware.terminal.cardholder); the PIN pad's
# own entry loop (drivers.pinpad) has no extension yet, so PIN screens do not offer it
EXTENDABLE = frozenset({"select_pump", "choose_app", "question", "swipe_card", "choose_product",
                        "enter_preset", "choose_language"})

# Phrases only speech needs, by key, until the ui/locales catalogues carry them as msgids "speech.<key>"
# (phrase() takes the catalogue's text first).
# Keys are named as printed on them and on the screens (CLEAR, ENTER) in every language; espeak-ng reads a
# Latin-script word in the ru, uk and fa voices with its English voice (`espeak-ng -v ru -x CLEAR`: "(en)").
SPEECH_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {"on": "Speech on. The 5 key has a raised dot. CLEAR three times on the welcome screen switches "
                 "speech off.",
           "off": "Speech off.", "digits": "Digits entered: {count}.", "option": "For {name}, press {key}.",
           "more_time": "Press CLEAR for more time.", "time_added": "More time.",
           "time_short": "Time is running out. Press CLEAR for more time."},
    "de": {"on": "Sprachausgabe an. Die Taste 5 hat einen fühlbaren Punkt. Dreimal CLEAR auf dem "
                 "Startbildschirm schaltet sie aus.",
           "off": "Sprachausgabe aus.", "digits": "Eingegebene Ziffern: {count}.",
           "option": "Für {name} drücken Sie {key}.", "more_time": "Für mehr Zeit drücken Sie CLEAR.",
           "time_added": "Mehr Zeit.", "time_short": "Die Zeit läuft ab. Für mehr Zeit drücken Sie CLEAR."},
    "fr": {"on": "Synthèse vocale activée. La touche 5 porte un point en relief. Trois fois CLEAR sur "
                 "l'écran d'accueil la désactive.",
           "off": "Synthèse vocale désactivée.", "digits": "Chiffres saisis : {count}.",
           "option": "Pour {name}, appuyez sur {key}.", "more_time": "Pour plus de temps, appuyez sur CLEAR.",
           "time_added": "Temps prolongé.",
           "time_short": "Le temps est presque écoulé. Pour plus de temps, appuyez sur CLEAR."},
    "ru": {"on": "Озвучивание включено. На клавише 5 есть выпуклая точка. Три нажатия CLEAR на начальном "
                 "экране выключают озвучивание.",
           "off": "Озвучивание выключено.", "digits": "Введено цифр: {count}.",
           "option": "{name}: нажмите {key}.", "more_time": "Чтобы добавить время, нажмите CLEAR.",
           "time_added": "Время добавлено.",
           "time_short": "Время заканчивается. Чтобы добавить время, нажмите CLEAR."},
    "uk": {"on": "Озвучення увімкнено. На клавіші 5 є опукла крапка. Три натискання CLEAR на початковому "
                 "екрані вимикають озвучення.",
           "off": "Озвучення вимкнено.", "digits": "Введено цифр: {count}.",
           "option": "{name}: натисніть {key}.", "more_time": "Щоб додати час, натисніть CLEAR.",
           "time_added": "Час додано.", "time_short": "Час спливає. Щоб додати час, натисніть CLEAR."},
    "es": {"on": "Voz activada. La tecla 5 tiene un punto en relieve. Pulsar CLEAR tres veces en la "
                 "pantalla de inicio la desactiva.",
           "off": "Voz desactivada.", "digits": "Dígitos introducidos: {count}.",
           "option": "Para {name}, pulse {key}.", "more_time": "Para más tiempo, pulse CLEAR.",
           "time_added": "Más tiempo.", "time_short": "El tiempo se acaba. Para más tiempo, pulse CLEAR."},
    "fa": {"on": "گفتار روشن شد. کلید ۵ یک نقطه برجسته دارد. سه بار CLEAR در صفحه آغاز گفتار را خاموش "
                 "می‌کند.",
           "off": "گفتار خاموش شد.", "digits": "رقم‌های وارد شده: {count}.",
           "option": "{name}: کلید {key}.", "more_time": "برای زمان بیشتر، CLEAR را فشار دهید.",
           "time_added": "زمان بیشتر.",
           "time_short": "زمان رو به پایان است. برای زمان بیشتر، CLEAR را فشار دهید."},
}

_CARD_NUMBER = re.compile(r"\d(?:[ -]?\d){9,}")       # ten or more digits, maybe grouped: a card number
_DIGIT = re.compile(r"\d")
_EMPTY = "-"                                          # ui.views shows an empty entry as a dash


def _language(code: str) -> str:
    code = code.strip().lower()
    return code if code in LANGUAGES and code in SPEECH_TEXTS else "en"


def voice(language: str) -> str:
    """espeak-ng voice of a screen language; unknown codes speak English, as they render English."""
    return VOICES[_language(language)]


def phrase(which: str, language: str, **fields: Any) -> str:
    """A speech phrase; the catalogue's msgid speech.<which> wins once the language's .po file has it."""
    lang = _language(language)
    found = catalogue(lang).get(f"speech.{which}") or SPEECH_TEXTS[lang][which]
    return found.format(**fields)


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
