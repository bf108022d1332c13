"""The screen-text catalogues (ui/locales/*.po): every language has every key with the same {fields}."""

from __future__ import annotations

import pytest

from contracts.errors import ConfigError
from contracts.reasons import DeclineReason
from contracts.screens import Screen
from ui.catalog import LANGUAGES, catalogue, fields_of, is_rtl, language_of, text

OTHERS = [lang for lang in LANGUAGES if lang != "en"]


def test_english_german_and_french_are_there_english_first() -> None:
    assert LANGUAGES[:3] == ("en", "de", "fr")


@pytest.mark.parametrize("lang", OTHERS)
def test_a_key_missing_or_stray_in_a_language_fails(lang: str) -> None:
    en, other = set(catalogue("en")), set(catalogue(lang))
    assert not en - other, f"{lang}.po lacks {sorted(en - other)}"
    assert not other - en, f"{lang}.po has keys English lacks: {sorted(other - en)}"


@pytest.mark.parametrize("lang", OTHERS)
def test_every_message_has_the_same_fields_as_english(lang: str) -> None:
    en = catalogue("en")
    wrong = {key: (fields_of(en[key]), fields_of(msg)) for key, msg in catalogue(lang).items()
             if fields_of(msg) != fields_of(en[key])}
    assert not wrong, f"{lang}.po: fields differ from English: {wrong}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_and_reason_has_its_texts(lang: str) -> None:
    texts = catalogue(lang)
    assert not [s.value for s in Screen if f"{s.value}.title" not in texts]
    assert not [r.value for r in DeclineReason if f"reason.{r.value}" not in texts]
    assert texts["language.name"] and all(msg.strip() == msg and msg for msg in texts.values())


def test_text_fills_fields_and_falls_back_to_english() -> None:
    assert text("de", "option.pump", pump=3) == "Zapfsäule 3"
    assert text("xx", "idle.title") == text("en", "idle.title") == "Welcome"
    assert language_of("FR") == "fr" and language_of(None) == language_of("zz") == "en"
    with pytest.raises(ConfigError):
        text("en", "no.such.key")


def test_a_field_not_passed_shows_empty_instead_of_failing_the_screen() -> None:
    assert text("en", "option.pump") == "Pump "
    assert text("en", "idle.title", unused="x") == "Welcome"


def test_direction_comes_from_the_locale() -> None:
    assert not is_rtl("en") and not is_rtl("de")
    assert is_rtl("fa") if "fa" in LANGUAGES else True
