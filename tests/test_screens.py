"""Screen texts: every language has every screen and decline reason, with the same fields as English."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import pytest

from contracts.reasons import LEGACY_REASONS, DeclineReason
from contracts.screens import Screen
from ui.screens import CARD_TEXTS, DECLINE_TEXTS, LANGUAGES, QUESTION_TEXTS, SCREENS, render

OTHERS = [lang for lang in LANGUAGES if lang != "en"]


def fields_of(lines: tuple[str, ...]) -> list[set[str]]:
    return [{name for _, name, _, _ in string.Formatter().parse(line) if name is not None} for line in lines]


def dummy_fields(screen: str) -> dict[str, str]:
    names = set().union(*fields_of(SCREENS["en"][screen]))
    return {name: f"<{name}>" for name in names}


def test_languages() -> None:
    assert LANGUAGES == ("en", "de", "fr")
    assert set(SCREENS) == set(DECLINE_TEXTS) == set(LANGUAGES)


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_has_the_same_screens_and_fields_as_english(lang: str) -> None:
    assert set(SCREENS[lang]) == set(SCREENS["en"])
    for screen, lines in SCREENS["en"].items():
        assert len(SCREENS[lang][screen]) == len(lines), (lang, screen)
        assert (set().union(*fields_of(SCREENS[lang][screen]))
                == set().union(*fields_of(lines))), (lang, screen)


@pytest.mark.parametrize("lang", OTHERS)
def test_every_decline_reason_is_translated(lang: str) -> None:
    assert set(DECLINE_TEXTS[lang]) == set(DECLINE_TEXTS["en"])
    assert all(text.strip() for text in DECLINE_TEXTS[lang].values())


# catalogue -> the keys it must have in every language: the enums' values, or English's own keys
CATALOGUES: dict[str, tuple[Mapping[str, Mapping[str, Any]], set[str]]] = {
    "screens": (SCREENS, {screen.value for screen in Screen}),
    "reasons": (DECLINE_TEXTS, {reason.value for reason in DeclineReason}),
    "questions": (QUESTION_TEXTS, set(QUESTION_TEXTS["en"])),
    "cards": (CARD_TEXTS, set(CARD_TEXTS["en"])),
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", CATALOGUES)
def test_every_catalogue_has_every_key_and_no_stray_one(name: str, lang: str) -> None:
    texts, keys = CATALOGUES[name]
    missing, stray = keys - set(texts[lang]), set(texts[lang]) - keys
    assert not missing, f"{lang}: {name} without text: {sorted(missing)}"
    assert not stray, f"{lang}: {name} texts for no key: {sorted(stray)}"
    assert all(texts[lang].values())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_questions_and_card_names_render_in_the_language(lang: str) -> None:
    lines = render(Screen.QUESTION, lang, question="odometer", answer="12")
    assert lines[:2] == (QUESTION_TEXTS[lang]["odometer"], "12")
    assert CARD_TEXTS[lang]["loyalty"] in render(Screen.CARD_READ, lang, card="loyalty")[0]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_legacy_codes_render_as_their_reason(lang: str) -> None:
    for code, reason in LEGACY_REASONS.items():
        assert code not in DECLINE_TEXTS[lang]
        assert render("declined", lang, reason=code)[1] == DECLINE_TEXTS[lang][reason.value]


def test_render_takes_enum_members_and_codes_alike() -> None:
    assert render(Screen.DECLINED, "de", reason=DeclineReason.CARD_EXPIRED) == (
        "Abgelehnt", "Karte abgelaufen", "Bitte Karte entnehmen")
    assert render(Screen.QUESTION, question="Odometer?", answer="12345") == (
        "Odometer?", "12345", "Press ENTER")
    assert render("card_read", "fr", card="Fidélité") == (
        "Carte Fidélité lue", "Insérez la carte de paiement")


def test_bank_screens_and_reasons_exist() -> None:
    for screen in ("choose_app", "swipe_card", "insert_chip", "approved_up_to", "lift_nozzle_amount",
                   "card_removed", "processing", "enter_pin_last"):
        assert screen in SCREENS["en"]
    for reason in ("do_not_honour", "insufficient_funds", "wrong_pin", "pin_tries_exceeded",
                   "card_expired", "card_declined", "not_accepted", "host_timeout", "host_unavailable",
                   "chip_error", "card_removed"):
        assert reason in DECLINE_TEXTS["en"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_screen_renders_with_its_fields(lang: str) -> None:
    for screen in SCREENS["en"]:
        fields = dummy_fields(screen)
        lines = render(screen, lang, **fields)
        assert len(lines) == len(SCREENS["en"][screen])
        assert all("{" not in line and "}" not in line for line in lines)
        assert all(any(value in line for line in lines) for value in fields.values()), (lang, screen)
        assert all(len(line) <= 40 for line in lines), (lang, screen, lines)   # small display


@pytest.mark.parametrize("lang", LANGUAGES)
def test_decline_reasons_render_in_the_language(lang: str) -> None:
    for reason, text in DECLINE_TEXTS[lang].items():
        assert render("declined", lang, reason=reason)[1] == text


def test_examples() -> None:
    assert render("approved_up_to", amount="150.00 EUR", pump=3) == (
        "Approved up to", "150.00 EUR", "Lift nozzle on pump 3")
    assert render("enter_pin_last", "de", stars="**") == ("PIN eingeben", "**", "Letzter PIN-Versuch")
    assert render("declined", "fr", reason="insufficient_funds")[1] == "Provision insuffisante"
    assert render("choose_app", apps="1 VISA DEBIT  2 VISA CREDIT")[1] == "1 VISA DEBIT  2 VISA CREDIT"


def test_unknown_language_and_reason_fall_back() -> None:
    assert render("idle", "xx") == render("idle", "en") == ("Welcome", "Insert card")
    assert render("declined", "xx", reason="wrong_pin")[1] == "Wrong PIN"
    assert render("declined", "de", reason="some_new_code")[1] == "some_new_code"
