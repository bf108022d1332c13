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

from ui.screens import LANGUAGES, render

__all__ = ["EXTENDABLE", "IDLE_SCREENS", "PIN_SCREENS", "SPEECH_TEXTS", "VOICES", "phrase", "update",
           "utterance", "voice"]

# espeak-ng voice per ISO 639-1 code (our languages, the card's tag 5F2D); names as `espeak-ng --voices`
# lists them for espeak-ng 1.51 (Debian bookworm): gmw/en, gmw/de, roa/fr, zle/ru, zle/uk, roa/es, ira/fa.
VOICES: Mapping[str, str] = {"en": "en-gb", "de": "de", "fr": "fr-fr", "ru": "ru", "uk": "uk", "es": "es",
                             "fa": "fa"}

PIN_SCREENS = frozenset({"enter_pin", "enter_pin_last"})
IDLE_SCREENS = frozenset({"idle", "idle_bank_only", "offline"})
# prompts that wait for a key with a timeout the cardholder can extend (firmware.terminal.cardholder)
EXTENDABLE = frozenset({"select_pump", "choose_app", "question", "swipe_card"})

# Phrases only speech needs, by key; msgids "speech.<key>" once they move into the ui/locales catalogues.
SPEECH_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {"on": "Speech on. The 5 key has a raised dot. Press CLEAR three times on the welcome screen "
                 "to switch speech off.",
           "off": "Speech off.", "digits": "Digits entered: {count}.", "option": "For {name}, press {key}.",
           "pump": "For pump {pump}, press {pump}.", "more_time": "Press CLEAR for more time.",
           "time_added": "More time.", "time_short": "Time is running out. Press CLEAR for more time."},
    "de": {"on": "Sprachausgabe an. Die Taste 5 hat einen fühlbaren Punkt. Dreimal KORREKTUR auf dem "
                 "Startbildschirm schaltet sie aus.",
           "off": "Sprachausgabe aus.", "digits": "Eingegebene Ziffern: {count}.",
           "option": "Für {name} drücken Sie {key}.", "pump": "Für Zapfsäule {pump} drücken Sie {pump}.",
           "more_time": "Für mehr Zeit drücken Sie KORREKTUR.", "time_added": "Mehr Zeit.",
           "time_short": "Die Zeit läuft ab. Für mehr Zeit drücken Sie KORREKTUR."},
    "fr": {"on": "Synthèse vocale activée. La touche 5 porte un point en relief. Appuyez trois fois sur "
                 "CORRECTION sur l'écran d'accueil pour la désactiver.",
           "off": "Synthèse vocale désactivée.", "digits": "Chiffres saisis : {count}.",
           "option": "Pour {name}, appuyez sur {key}.", "pump": "Pour la pompe {pump}, appuyez sur {pump}.",
           "more_time": "Pour plus de temps, appuyez sur CORRECTION.", "time_added": "Temps prolongé.",
           "time_short": "Le temps est presque écoulé. Pour plus de temps, appuyez sur CORRECTION."},
    "ru": {"on": "Озвучивание включено. На клавише 5 есть выпуклая точка. Чтобы выключить, нажмите "
                 "СБРОС три раза на начальном экране.",
           "off": "Озвучивание выключено.", "digits": "Введено цифр: {count}.",
           "option": "Для {name} нажмите {key}.", "pump": "Для колонки {pump} нажмите {pump}.",
           "more_time": "Чтобы добавить время, нажмите СБРОС.", "time_added": "Время добавлено.",
           "time_short": "Время заканчивается. Чтобы добавить время, нажмите СБРОС."},
    "uk": {"on": "Озвучення увімкнено. На клавіші 5 є опукла крапка. Щоб вимкнути, натисніть СКИДАННЯ "
                 "тричі на початковому екрані.",
           "off": "Озвучення вимкнено.", "digits": "Введено цифр: {count}.",
           "option": "Для {name} натисніть {key}.", "pump": "Для колонки {pump} натисніть {pump}.",
           "more_time": "Щоб додати час, натисніть СКИДАННЯ.", "time_added": "Час додано.",
           "time_short": "Час спливає. Щоб додати час, натисніть СКИДАННЯ."},
    "es": {"on": "Voz activada. La tecla 5 tiene un punto en relieve. Pulse CORREGIR tres veces en la "
                 "pantalla de inicio para desactivarla.",
           "off": "Voz desactivada.", "digits": "Dígitos introducidos: {count}.",
           "option": "Para {name}, pulse {key}.", "pump": "Para el surtidor {pump}, pulse {pump}.",
           "more_time": "Para más tiempo, pulse CORREGIR.", "time_added": "Más tiempo.",
           "time_short": "El tiempo se acaba. Para más tiempo, pulse CORREGIR."},
    "fa": {"on": "گفتار روشن شد. کلید ۵ یک نقطه برجسته دارد. برای خاموش کردن، سه بار کلید پاک کردن را "
                 "در صفحه آغاز فشار دهید.",
           "off": "گفتار خاموش شد.", "digits": "رقم‌های وارد شده: {count}.",
           "option": "برای {name}، کلید {key} را فشار دهید.",
           "pump": "برای پمپ {pump}، کلید {pump} را فشار دهید.",
           "more_time": "برای زمان بیشتر، کلید پاک کردن را فشار دهید.", "time_added": "زمان بیشتر.",
           "time_short": "زمان رو به پایان است. برای زمان بیشتر، کلید پاک کردن را فشار دهید."},
}

_CARD_NUMBER = re.compile(r"\d(?:[ -]?\d){9,}")       # ten or more digits, maybe grouped: a card number
_DIGIT = re.compile(r"\d")


def _language(code: str) -> str:
    code = code.strip().lower()
    return code if code in LANGUAGES and code in SPEECH_TEXTS else "en"


def voice(language: str) -> str:
    """espeak-ng voice of a screen language; unknown codes speak English, as they render English."""
    return VOICES[_language(language)]


def phrase(which: str, language: str, **fields: Any) -> str:
    return SPEECH_TEXTS[_language(language)][which].format(**fields)


def _screen_lines(screen: str, language: str, fields: Mapping[str, Any]) -> tuple[str, ...]:
    """The screen's lines: the one place that reads the screen catalogue (View.speech() once it lands)."""
    return render(screen, language, **fields)


def _sentences(lines: tuple[str, ...]) -> list[str]:
    out = []
    for line in lines:
        text = _CARD_NUMBER.sub("", line.replace("*", "")).strip(" .…")
        if text:
            out.append(text + ".")
    return out


def _options(screen: str, language: str, fields: Mapping[str, Any]) -> list[str]:
    """The choices of a screen as "for X, press N", each with its key digit."""
    if screen == "select_pump":
        pumps = [p.strip() for p in str(fields.get("pumps", "")).split(",") if p.strip().isdigit()]
        return [phrase("pump", language, pump=p) for p in pumps]
    options = []            # choose_app: "1 VISA  2 MAESTRO", as firmware.terminal.cardholder writes it
    for item in str(fields.get("apps", "")).split("  "):
        key, _, name = item.strip().partition(" ")
        if key.isdigit() and name:
            options.append(phrase("option", language, name=name, key=key))
    return options


def _without(screen: str, language: str, fields: Mapping[str, Any], name: str, probe: str) -> list[str]:
    """The screen's lines that do not show field `name`: those that stay the same whether it is `probe`
    or empty. This leaves the PIN's stars or the option list out whatever the catalogue's layout."""
    shown = _screen_lines(screen, language, {**fields, name: probe})
    empty = set(_screen_lines(screen, language, {**fields, name: ""}))
    return _sentences(tuple(line for line in shown if line in empty))


_OPTION_FIELDS = {"select_pump": "pumps", "choose_app": "apps"}


def utterance(screen: str, language: str = "en", **fields: Any) -> str:
    """All a screen says: title, figures, options with their keys, hint. PIN screens say only the count."""
    language = _language(language)
    if screen in PIN_SCREENS:
        parts = _without(screen, language, {}, "stars", "*")        # no other field reaches a PIN screen
        stars = str(fields.get("stars", ""))
        if stars:
            parts.insert(1, phrase("digits", language, count=len(stars)))
        return " ".join(parts)
    if screen in _OPTION_FIELDS:
        name = _OPTION_FIELDS[screen]
        kept = _without(screen, language, fields, name, str(fields.get(name, "")))
        parts = kept[:1] + _options(screen, language, fields) + kept[1:]
    else:
        parts = _sentences(_screen_lines(screen, language, fields))
    if screen in EXTENDABLE:
        parts.append(phrase("more_time", language))
    return " ".join(parts)


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
